-- every usable billing line of the month, subscription and project in one id namespace, with the
-- reason a row cannot be used when its line_id is taken (line_conflicts, a handful of rows).
-- a view: the typed rows are already stored (checked_*), and the steps that read it each take a
-- different slice of it, so a 10M-row copy would cost more than reading them again.
-- amount_minor: minor units of the line's currency; negative for refunds and chargebacks.
with subscription as (
    select
        'subscription' as source,
        1 as source_rank,
        (select source_file from file_rows where file = 'subscription_billing') as source_file,
        row_number,
        line_id,
        line_type,
        invoice_date,
        customer_id,
        product_family as item,
        currency,
        digits,
        amount_minor,
        refers_to_line_id,
        subscription_start,
        product_family,
        null::varchar as project_id,
        null::varchar as engagement_type,
        null::varchar as partner_id,
        null::hugeint as contract_value_minor,
        null::decimal(9, 4) as partner_contribution_pct
    from subscription_billing
),

project as (
    select
        'project' as source,
        2 as source_rank,
        (select source_file from file_rows where file = 'project_billing') as source_file,
        row_number,
        line_id,
        line_type,
        invoice_date,
        customer_id,
        project_id as item,
        currency,
        digits,
        amount_minor,
        refers_to_line_id,
        null::date as subscription_start,
        null::varchar as product_family,
        project_id,
        engagement_type,
        partner_id,
        contract_value_minor,
        partner_contribution_pct
    from project_billing
),

unioned as (
    select * from subscription
    union all
    select * from project
)

select
    u.*,
    u.line_id as record_id,
    k.reason_code,
    k.message
from unioned as u
left join line_conflicts as k on k.source_rank = u.source_rank and k.row_number = u.row_number
