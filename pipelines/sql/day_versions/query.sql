-- each day of the month with the agreement version in force on it: a line finds its version by an
-- equi-join on its invoice date. version null: no version is in force (no_agreement).
select cast(t.day as date) as day, a.version
from range(cast($month_start as timestamp), cast($month_end as timestamp) + interval 1 day, interval 1 day) as t(day)
left join agreements as a
    on cast(t.day as date) >= a.effective_from
    and (a.next_from is null or cast(t.day as date) < a.next_from)
