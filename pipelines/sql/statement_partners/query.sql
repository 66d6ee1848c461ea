-- every partner with a statement (partner_results), whether held, and statement_no: the partner's
-- place in partner_id order, so the statements' sort compares an integer where it would compare
-- partner id strings on every one of the month's rows. a temp table: sql/statement_other_rows and
-- sql/statement_lines both read it (outputs.write_statements)
select r.*, h.partner_id is not null as held, row_number() over (order by r.partner_id) as statement_no
from partner_results as r
left join held_partners as h on h.partner_id = r.partner_id
