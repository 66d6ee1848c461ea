select $billing_month as billing_month, line_id, refers_to_line_id, amount_minor from refunds
