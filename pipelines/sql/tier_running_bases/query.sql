-- the tier base before each credit of a partner's crossing day (tier_day_bases.needs_running_base):
-- the day's starting base plus the day's earlier credits in (line_id, credit_key) order. program
-- currency, major units, exact. only those days' credits are sorted, never the whole month.
with credits as (
    select
        l.row_number,
        c.claim_day,
        l.line_id,
        c.credit_key,
        c.partner_id,
        l.invoice_date,
        credited_program(l.amount_minor, c.credit_pct, l.fx_rate, l.digits) as credited_program
    from charges_fx as l  -- the usable charges with version and fx rate (compute.run_rules)
    join credited_days as c on c.customer_id = l.customer_id and c.invoice_date = l.invoice_date
    join tier_day_bases as d
        on d.partner_id = c.partner_id and d.invoice_date = l.invoice_date and d.needs_running_base
    where l.source = 'subscription'
)

-- credited_program: the credit's own amount in program currency (sub_shares needs it only here).
-- sub_shares finds a credit's row by (row_number, claim_day): integer keys, which hash faster than
-- (line_id, credit_key) for each of the month's millions of credits
select
    c.row_number,
    c.claim_day,
    c.credited_program,
    d.day_base + coalesce(sum(c.credited_program) over (
        partition by c.partner_id, c.invoice_date order by c.line_id, c.credit_key
        rows between unbounded preceding and 1 preceding), 0) as base_before
from credits as c
join tier_day_bases as d on d.partner_id = c.partner_id and d.invoice_date = c.invoice_date
