-- every credited partner's share of every usable charge: the subscription shares (sub_shares, tier
-- crossings already split by tier_splits) with their claim's columns from credited_days, and the
-- project shares. share_minor and amount_minor: minor units of the line's own currency.
select
    s.line_id, c.credit_key, c.partner_id, c.engagement_type, c.credit_pct, s.rate, s.share_minor,
    c.invoice_date, c.customer_id, s.item, s.currency, s.digits, s.amount_minor,
    (select source_file from file_rows where file = 'subscription_billing') as source_file,
    s.row_number, 'subscription' as source, s.note
from sub_shares as s
join credited_days as c on c.claim_day = s.claim_day
union all
select
    line_id, credit_key, partner_id, engagement_type, credit_pct, rate, share_minor,
    invoice_date, customer_id, item, currency, digits, amount_minor, source_file, row_number,
    'project', null
from project_shares
