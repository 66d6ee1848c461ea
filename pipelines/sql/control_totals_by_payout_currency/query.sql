-- summary.json's totals per payout currency, minor units of it: opening balances, the month's
-- converted movements, gross, withholding and net paid, carried (closing) and pending, and the
-- partners (all, and paid); the remittance's own sums beside them for the identities.
with remitted as (
    select
        payout_currency,
        sum(gross_minor) as gross,
        sum(withholding_minor) as withholding,
        sum(net_minor) as net,
        count(*) as rows
    from partner_results
    where status = 'paid'
    group by all
)

select
    r.payout_currency,
    any_value(r.payout_digits) as digits,
    sum(r.opening_minor) as opening,
    sum(r.earnings_minor + r.clawbacks_minor + r.referral_fees_minor + r.fees_minor + r.adjustments_minor) as movements,
    sum(r.gross_minor) as gross,
    sum(r.withholding_minor) as withholding,
    sum(r.net_minor) as net_paid,
    sum(r.closing_minor) as carried,
    sum(r.pending_minor) as pending,
    count(*) as partners,
    count(*) filter (where r.status = 'paid') as partners_paid,
    coalesce(any_value(m.gross), 0) as remitted_gross,
    coalesce(any_value(m.rows), 0) as remitted_rows
from partner_results as r
left join remitted as m on m.payout_currency = r.payout_currency
group by r.payout_currency
order by r.payout_currency
