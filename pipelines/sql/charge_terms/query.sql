-- every charge among the month's lines with the two terms its share needs: the agreement version in
-- force on its invoice_date and month m's fx rate for its currency (null where there is none;
-- charges_checked gives the reason). a view over lines: charges_checked reads it, and so, less the
-- charges it refuses, do sub_shares and the tier tables (compute.run_rules, charges_fx): the
-- agreement and the rate are looked up in this one place.
select
    c.*,
    a.version,
    r.rate as fx_rate  -- units of the program currency per unit of the line's currency
from lines as c
-- every date here lies in month m (checked at ingest): one equi-join on a 31-row table
left join day_versions as a on a.day = c.invoice_date
left join month_rates as r on r.currency = c.currency
where c.line_type = 'charge'
