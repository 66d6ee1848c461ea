-- lines that do not reconcile on their own (sql/line_totals says which). expected: none.
select coalesce(sum(lines_failing), 0) as lines_failing
from line_totals
