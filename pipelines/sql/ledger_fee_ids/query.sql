select $billing_month as billing_month, fee_id from fees
