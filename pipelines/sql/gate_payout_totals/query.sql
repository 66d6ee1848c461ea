-- what the partners paid this month get, per payout currency, from the balances table (minor
-- units): the files and summary.json are checked against it.
select
    payout_currency as currency,
    sum(gross_minor) as gross,
    sum(withholding_minor) as withholding,
    sum(net_minor) as net,
    count(*) as partners_paid
from partner_results
where status = 'paid'
group by all
order by all
