-- the view `credits`, less what the ledger does not keep, with the claim's text columns cast to
-- ENUMs (metadata.yaml: dictionaries) on the few thousand claims of credited_days, before they are
-- joined to the month's millions of subscription credits: a cast after the join costs a lookup per
-- credit. the Parquet writer writes each ENUM's dictionary; the file holds the same strings.
-- share_minor: minor units of the charge's currency
with claims as (
    select
        claim_day,
        credit_key::ledger_credit_key as credit_key,
        partner_id::ledger_partner_id as partner_id,
        engagement_type::ledger_engagement_type as engagement_type,
        credit_pct
    from credited_days
)

select
    $billing_month as billing_month, s.line_id, c.credit_key, c.partner_id, c.engagement_type, c.credit_pct,
    s.rate, s.share_minor
from sub_shares as s
join claims as c on c.claim_day = s.claim_day
union all
select
    $billing_month, line_id, credit_key::ledger_credit_key, partner_id::ledger_partner_id,
    engagement_type::ledger_engagement_type, credit_pct, rate, share_minor
from project_shares
