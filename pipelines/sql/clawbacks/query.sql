-- each credited partner's clawback on each usable refund or chargeback:
-- round(original share x refund amount / original amount), half away from zero, with the original's
-- attribution and rate, whichever month the original was billed in. minor units of the line's
-- currency; negative (the partner gives back).
with original_credits as (
    select line_id, credit_key, partner_id, credit_pct, rate, share_minor from credits
    union all
    select line_id, credit_key, partner_id, credit_pct, rate, share_minor
    from ledger.charge_credits
    where billing_month < $billing_month
),

original_lines as (
    select line_id, amount_minor, invoice_date, item from charge_lines  -- the usable charges (compute.run_rules)
    union all
    select line_id, amount_minor, invoice_date, item
    from ledger.billing_lines
    where billing_month < $billing_month and line_type = 'charge'
)

select
    r.line_id,
    r.line_type,
    r.refers_to_line_id,
    r.invoice_date,
    r.customer_id,
    r.currency,
    r.digits,
    r.amount_minor,
    r.source_file,
    r.row_number,
    o.item,
    c.credit_key,
    c.partner_id,
    c.credit_pct,
    c.rate,
    c.share_minor as original_share_minor,
    o.amount_minor as original_minor,
    coalesce(div_round(c.share_minor * r.amount_minor, o.amount_minor), 0) as clawback_minor
from refunds as r
join original_lines as o on o.line_id = r.refers_to_line_id
join original_credits as c on c.line_id = r.refers_to_line_id
