-- the month's earnings as computed (restatements compare recomputations with these)
select $billing_month as billing_month, partner_id, currency, kind, amount_minor from month_earnings
