-- every usable billing line of the month, subscription and project in one id namespace.
-- a line_id already used (by an earlier month, or earlier in this month: the subscription file
-- first, then the project file, each in row order) is a duplicate; the earlier row keeps it.
-- amount_minor: minor units of the line's currency; negative for refunds and chargebacks.
with subscription as (
    select
        'subscription' as source,
        1 as source_rank,
        $subscription_file as source_file,
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
    from stg_subscription_billing
),

project as (
    select
        'project' as source,
        2 as source_rank,
        $project_file as source_file,
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
    from stg_project_billing
),

unioned as (
    select * from subscription
    union all
    select * from project
),

repeated as (
    -- ids that occur more than once this month (few)
    select line_id from unioned group by line_id having count(*) > 1
),

used_before as (
    -- ids of this month already taken by an earlier month (few; probes the ledger once)
    select distinct b.line_id
    from ledger.billing_lines as b
    semi join unioned as u on u.line_id = b.line_id
    where b.billing_month < $billing_month
),

conflict_rows as (
    -- only rows whose id conflicts are ranked; everything else keeps its id
    select
        u.source_rank,
        u.row_number,
        u.line_id,
        row_number() over (partition by u.line_id order by u.source_rank, u.row_number) as id_rank,
        u.line_id in (select line_id from used_before) as was_used
    from unioned as u
    where u.line_id in (select line_id from repeated union select line_id from used_before)
),

ranked as (
    select
        u.*,
        coalesce(k.id_rank, 1) as id_rank,
        coalesce(k.was_used, false) as was_used
    from unioned as u
    left join conflict_rows as k
        on k.line_id = u.line_id and k.source_rank = u.source_rank and k.row_number = u.row_number
)

select
    * exclude (id_rank, was_used),
    line_id as record_id,
    case when was_used or id_rank > 1 then 'duplicate_line_id' end as reason_code,
    case
        when was_used then 'line_id ' || line_id || ' was already used in an earlier month'
        when id_rank > 1 then 'line_id ' || line_id || ' was already used on an earlier row this month'
    end as message
from ranked
