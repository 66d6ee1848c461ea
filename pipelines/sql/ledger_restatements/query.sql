-- the restatements this month posted (a difference is posted once; later runs subtract these).
-- amount_minor: minor units of the currency
select $billing_month as billing_month, partner_id, locked_month, currency, difference_minor as amount_minor
from restatement_differences
where posted
