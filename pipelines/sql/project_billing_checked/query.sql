-- project_billing.csv typed, each row with the first reason it cannot be used.
-- amount_minor and contract_value_minor: integer minor units of the line's currency.
with raw as (
    select * from raw_project_billing
),

typed as (
    select
        raw.*,
        as_date(raw.invoice_date) as invoice_date_d,
        c.digits,
        p.partner_id is not null as known_partner
    from raw
    left join currencies as c on c.code = raw.currency
    left join partners as p on p.partner_id = raw.partner_id
),

checked as (
    select
        *,
        case
            when line_id is null or invoice_date is null or customer_id is null or currency is null
                or amount is null or line_type is null or project_id is null or engagement_type is null
                or partner_id is null then 'missing_value'
            when line_type in ('refund', 'chargeback') and refers_to_line_id is null then 'missing_value'
            when invoice_date_d is null then 'bad_date'
            when line_type not in ('charge', 'refund', 'chargeback') then 'bad_value'
            when engagement_type not in ('partner_led', 'company_led', 'joint') then 'bad_value'
            when digits is null then 'unknown_currency'
            when not is_money(amount) then 'bad_amount'
            when decimals_of(amount) > digits then 'too_many_decimals'
            when line_type = 'charge' and to_minor(amount, digits) < 0 then 'charge_below_zero'
            when line_type <> 'charge' and to_minor(amount, digits) > 0 then 'refund_above_zero'
            when invoice_date_d not between $month_start and $month_end then 'date_outside_month'
            when not known_partner then 'unknown_partner'
            when line_type = 'charge' and engagement_type = 'partner_led' and contract_value is null then 'missing_value'
            when contract_value is not null and (not is_money(contract_value) or contract_value like '-%') then 'bad_amount'
            when contract_value is not null and decimals_of(contract_value) > digits then 'too_many_decimals'
            when line_type = 'charge' and engagement_type = 'joint' and partner_contribution_pct is null
                then 'joint_without_contribution'
            when partner_contribution_pct is not null and not is_pct(partner_contribution_pct) then 'bad_value'
        end as reason_code
    from typed
)

select
    row_number,
    line_id,
    invoice_id,
    invoice_date_d as invoice_date,
    customer_id,
    currency,
    digits,
    case when reason_code is null then to_minor(amount, digits) end as amount_minor,
    line_type,
    refers_to_line_id,
    project_id,
    engagement_type,
    partner_id,
    case when reason_code is null and contract_value is not null then to_minor(contract_value, digits) end
        as contract_value_minor,
    try_cast(partner_contribution_pct as decimal(9, 4)) as partner_contribution_pct,
    reason_code,
    case reason_code
        when 'missing_value' then 'a required value is blank (line_id, invoice_date, customer_id, currency, amount, line_type, project_id, engagement_type, partner_id; contract_value for a partner_led charge; refers_to_line_id for a refund or chargeback)'
        when 'bad_date' then 'invoice_date ' || invoice_date || ' is not a YYYY-MM-DD date'
        when 'bad_value' then 'line_type, engagement_type or partner_contribution_pct is outside the allowed values: '
            || line_type || ', ' || engagement_type || ', ' || coalesce(partner_contribution_pct, '')
        when 'unknown_currency' then 'currency ' || currency || ' is not an ISO 4217 code'
        when 'bad_amount' then 'amount ' || amount || ' or contract_value ' || coalesce(contract_value, '') || ' is not a valid decimal'
        when 'too_many_decimals' then 'amount ' || amount || ' or contract_value ' || coalesce(contract_value, '') || ' has more decimals than ' || currency || ' allows (' || digits || ')'
        when 'charge_below_zero' then 'a charge of ' || amount || ' is below zero'
        when 'refund_above_zero' then 'a ' || line_type || ' of ' || amount || ' is above zero'
        when 'date_outside_month' then 'invoice_date ' || invoice_date || ' is outside the export month ' || strftime($month_start, '%Y-%m')
        when 'unknown_partner' then 'partner ' || partner_id || ' is not in partners.csv'
        when 'joint_without_contribution' then 'joint project line without partner_contribution_pct'
    end as message
from checked
