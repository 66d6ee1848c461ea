-- the tier base at the start of each partner's invoice day (a few thousand rows), and whether a step
-- lies strictly inside the day's range (then the day's credits need a per-line running base,
-- tier_running_bases). tier base: the partner's credited subscription charges in program currency
-- (major units, exact): the ledger's earlier months (lifetime, or this calendar year) plus this
-- month's in (invoice_date, line_id) order. refunds do not lower it.
with charge_days as (
    -- the usable subscription charges summed per customer, day and conversion (minor units of the
    -- line's currency): credited_program is exact and linear in the amount, so a sum of the lines'
    -- credited amounts is the credited amount of their sum
    select customer_id, invoice_date, version, fx_rate, digits, sum(amount_minor) as amount_minor
    from charges_fx  -- the usable charges with version and fx rate (compute.run_rules)
    where source = 'subscription'
    group by all
),

credits as (
    -- each credited partner's share of those sums in program currency, major units: minor units x
    -- credit% x fx / 10^digits (exact decimal arithmetic)
    select
        c.partner_id,
        l.invoice_date,
        l.version,
        credited_program(l.amount_minor, c.credit_pct, l.fx_rate, l.digits) as credited_program
    from charge_days as l
    join credited_days as c on c.customer_id = l.customer_id and c.invoice_date = l.invoice_date
),

opening as (
    select
        partner_id,
        sum(credited_program) as lifetime_base,
        sum(credited_program) filter (where year = year($month_start)) as year_base
    from ledger.tier_base
    where billing_month < $billing_month
    group by partner_id
),

day_totals as (
    -- per partner and invoice day: the day's credited total (a few thousand rows). a day has one
    -- agreement version, so one tier scope; the month lies in one calendar year, so the month's
    -- running sum is the same under either scope and only the opening base depends on it.
    select c.partner_id, c.invoice_date, any_value(c.version) as version, any_value(s.scope) as tier_scope,
           sum(c.credited_program) as day_total
    from credits as c
    join tier_scopes as s on s.version = c.version
    group by c.partner_id, c.invoice_date
),

day_bases as (
    -- the tier base at the start of each day: the opening base of the day's scope + the month's
    -- earlier days (whatever their scope), in date order
    select
        d.partner_id,
        d.invoice_date,
        d.version,
        d.day_total,
        case when d.tier_scope = 'lifetime' then coalesce(o.lifetime_base, 0) else coalesce(o.year_base, 0) end
        + coalesce(sum(d.day_total) over (
            partition by d.partner_id order by d.invoice_date
            rows between unbounded preceding and 1 preceding), 0) as day_base
    from day_totals as d
    left join opening as o on o.partner_id = d.partner_id
)

-- a charge can cross a step only on a day whose base range has a step strictly inside it; every
-- other day's charges all lie in the bracket of the day's starting base, so the per-line running
-- sum (a sort by line_id) is needed only for the lines of those few crossing days
-- day_total (the day's credits) is also the ledger's tier base for the month (outputs.write_ledger_delta).
-- first_step: the bracket of the day's starting base, the number of the day's version's steps at
-- or below it (0 = below every step): off the crossing days, every credit of the day is in it
select
    b.partner_id,
    b.invoice_date,
    b.day_base,
    b.day_total,
    exists (
        select 1 from tier_steps as s
        where s.above > b.day_base and s.above < b.day_base + b.day_total
    ) as needs_running_base,
    (select count(*) from tier_steps as s where s.version = b.version and s.above <= b.day_base)::integer
        as first_step
from day_bases as b
