-- the month's usable billing lines totalled per currency and source (a few rows): what they billed,
-- what their partners got (share, or clawback on a refund), what the company keeps, what was billed
-- to no partner, and how many lines do not reconcile on their own. the control totals read it.
-- minor units of the line's own currency; refunds, chargebacks and clawbacks are negative.
-- company_share = amount - the partners' rounded shares (or clawbacks).
-- each line's figures are worked out below (per_line), then summed: the 10M lines are never stored.
-- no 10M x 9M join: a subscription charge's credits are sub_shares' rows of its customer and
-- invoice day (one per claim credited that day, credited_days), so a charge with one claim is that
-- credit's row and only the lines with several claims (about 1 in 8 at 10M lines) are grouped; a
-- charge whose day has no claim is unattributed.
with claims as (
    -- claims credited per customer and invoice day (a few thousand rows)
    select customer_id, invoice_date, count(*) as claims from credited_days group by all
),

claim_days as (
    -- each credit's claim and day (sub_shares.claim_day) with its day's number of claims
    select c.claim_day, d.claims
    from credited_days as c
    join claims as d on d.customer_id = c.customer_id and d.invoice_date = c.invoice_date
),

subscription_credited as not materialized (
    select s.line_id, s.currency, s.digits, s.amount_minor, s.share_minor, d.claims
    from sub_shares as s
    join claim_days as d on d.claim_day = s.claim_day
),

subscription_charges as (
    select line_id, 'subscription' as source, currency, digits, amount_minor, 'charge' as line_type,
           share_minor as partner_share, false as unattributed
    from subscription_credited
    where claims = 1
    union all
    select line_id, 'subscription', any_value(currency), any_value(digits), any_value(amount_minor), 'charge',
           sum(share_minor), false
    from subscription_credited
    where claims > 1
    group by line_id
    union all
    select l.line_id, l.source, l.currency, l.digits, l.amount_minor, l.line_type, 0, true
    from charge_lines as l
    anti join claims as d on d.customer_id = l.customer_id and d.invoice_date = l.invoice_date
    where l.source = 'subscription'
),

project_charges as (
    -- a handful of rows: grouped and joined as they come
    select l.line_id, l.source, l.currency, l.digits, l.amount_minor, l.line_type,
           coalesce(sh.s, 0) as partner_share, sh.line_id is null as unattributed
    from charge_lines as l
    left join (select line_id, sum(share_minor) as s from project_shares group by line_id) as sh
        on sh.line_id = l.line_id
    where l.source = 'project'
),

refund_lines as (
    -- a refund is unattributed when its original was (no partner credited on it: no clawback rows,
    -- since sql/clawbacks has a row for every credit of the original, zero ones included), so that
    -- unattributed, like billed, is net of refunds
    select r.line_id, r.source, r.currency, r.digits, r.amount_minor, r.line_type, coalesce(cl.s, 0) as clawed_back,
           cl.line_id is null as unattributed
    from refunds as r
    left join (select line_id, sum(clawback_minor) as s from clawbacks group by line_id) as cl
        on cl.line_id = r.line_id
),

per_line as (
    select
        line_id, source, currency, amount_minor, line_type,
        partner_share::hugeint as partner_share,
        0::hugeint as clawed_back,
        (amount_minor - partner_share)::hugeint as company_share,
        unattributed
    from (select * from subscription_charges union all select * from project_charges)
    union all
    select
        line_id, source, currency, amount_minor, line_type,
        0::hugeint,
        clawed_back::hugeint,
        (amount_minor - clawed_back)::hugeint,
        unattributed
    from refund_lines
)

select
    currency,
    source,
    count(*) as lines,
    sum(amount_minor)::hugeint as billed,
    sum(partner_share) as partner_share,
    sum(clawed_back) as clawed_back,
    sum(company_share) as company_share,
    coalesce(sum(amount_minor) filter (where unattributed), 0)::hugeint as unattributed,
    -- a charge that pays its partners more than it billed or less than nothing, a refund that claws
    -- back more than it refunds or gives back, or a line whose parts do not add up to its amount
    count(*) filter (where partner_share + clawed_back + company_share <> amount_minor
                        or (line_type = 'charge' and (partner_share > amount_minor or partner_share < 0))
                        or (line_type <> 'charge' and (clawed_back < amount_minor or clawed_back > 0)))
        as lines_failing
from per_line
group by currency, source
