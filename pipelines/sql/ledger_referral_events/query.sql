select
    $billing_month as billing_month, event_id, partner_id, deal_id, event_type, event_date,
    report_code is null as paid
from referral_fees
