-- what finance pays: one row per partner paid this month, sorted by partner_id.
-- amounts in the payout currency with exactly its minor-unit digits; only the last 4 characters
-- of account_ref ever leave the run; names and ids are made safe for spreadsheets.
select
    safe_text('PO-' || replace($billing_month, '-', '') || '-' || r.partner_id) as payment_reference,
    $billing_month as billing_month,
    safe_text(r.partner_id) as partner_id,
    safe_text(p.name) as partner_name,
    r.payout_currency,
    fmt_money(r.gross_minor, r.payout_digits) as gross_amount,
    fmt_money(r.withholding_minor, r.payout_digits) as withholding_amount,
    fmt_money(r.net_minor, r.payout_digits) as net_amount,
    p.payout_method,
    safe_text(last4(p.account_ref)) as account_last4
from partner_results as r
join partners as p on p.partner_id = r.partner_id
where r.status = 'paid'
order by r.partner_id
