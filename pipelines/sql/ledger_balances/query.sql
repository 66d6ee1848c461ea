-- minor units of the payout currency
select
    $billing_month as billing_month, partner_id, payout_currency, payout_digits as digits,
    opening_minor, closing_minor, status
from partner_results
