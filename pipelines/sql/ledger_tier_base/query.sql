-- the sum of tier_day_bases' day totals (each the sum of that partner's and day's credits), not a
-- scan of the month's credits. program currency, major units, exact.
select
    $billing_month as billing_month, partner_id, year(invoice_date) as year,
    sum(day_total)::decimal(38, 20) as credited_program
from tier_day_bases
group by all
