-- summary.json's control totals per currency, minor units of that currency: what was billed,
-- the partners' shares, what the company keeps, what was billed to no partner, clawed back,
-- the referral fees, fees and adjustments booked in it. signs as billed: refunds and clawbacks negative.
with refs as (
    select fee_currency as currency, sum(fee_minor) as total
    from referral_fees
    where report_code is null
    group by all
),

fees_by as (
    select currency, sum(amount_minor) as total from fees group by all
),

adjustments_by as (
    -- adjustments and the restatements this month posted
    select currency, sum(amount_minor) as total
    from (
        select currency, amount_minor from month_adjustments
        union all
        select currency, difference_minor from restatement_differences where posted
    )
    group by all
),

per_currency as (
    select
        currency,
        sum(billed) as billed,
        sum(partner_share) as partner_share,
        sum(company_share) as company_share,
        sum(unattributed) as unattributed,
        sum(clawed_back) as clawed_back
    from line_totals  -- per currency and source
    group by currency
),

currencies_used as (
    select currency from per_currency
    union select currency from refs
    union select currency from fees_by
    union select currency from adjustments_by
)

select
    u.currency,
    c.digits,
    coalesce(p.billed, 0) as billed,
    coalesce(p.partner_share, 0) as partner_share,
    coalesce(p.company_share, 0) as company_share,
    coalesce(p.unattributed, 0) as unattributed,
    coalesce(p.clawed_back, 0) as clawed_back,
    coalesce(r.total, 0) as referral_fees,
    coalesce(f.total, 0) as fees,
    coalesce(a.total, 0) as adjustments
from currencies_used as u
join currencies as c on c.code = u.currency
left join per_currency as p on p.currency = u.currency
left join refs as r on r.currency = u.currency
left join fees_by as f on f.currency = u.currency
left join adjustments_by as a on a.currency = u.currency
order by u.currency
