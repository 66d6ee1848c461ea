-- the fx_moves suite's frame: each currency's rate for the month and for the month before (the
-- same as-of rule: the latest rate_date on or before the month's last day). rate: units of the
-- program currency per unit of currency.
select
    currency,
    arg_max(rate, rate_date) filter (where rate_date <= $month_end) as rate,
    arg_max(rate, rate_date) filter (where rate_date <= $previous_month_end) as previous_rate
from fx_rates
group by currency
having count(*) filter (where rate_date <= $month_end) > 0
order by currency
