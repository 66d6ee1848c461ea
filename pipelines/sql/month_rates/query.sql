-- each currency's rate for month m: its row with the latest rate_date on or before the month's
-- last day. one unit of currency = rate units of the program currency; the program currency is 1.
select currency, arg_max(rate, rate_date) as rate
from fx_rates
where rate_date <= $month_end and currency <> $program_currency
group by currency
union all
select $program_currency, 1::decimal(22, 10)
