-- share_minor: minor units of the charge's currency
select
    $billing_month as billing_month, line_id, credit_key, partner_id, engagement_type, credit_pct,
    rate, share_minor
from credits
