select $billing_month as billing_month, $program_currency as program_currency
