-- the fx rates the month used (a restatement recomputes a locked month with its own rates)
select $billing_month as billing_month, currency, rate from month_rates
