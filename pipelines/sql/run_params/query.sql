-- the run's parameters as a one-row table, for the views (a view binds no parameters).
-- next_month_start: an earning is payable in m when date + holding_days < next_month_start.
select
    $billing_month::varchar as billing_month,
    $holding_days::integer as holding_days,
    $month_end::date as month_end,
    $next_month_start::date as next_month_start
