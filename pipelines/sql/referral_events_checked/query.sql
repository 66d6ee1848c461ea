-- referral_events.csv typed; first_year_contract_value (minor units of the event currency) is required for signed_agreement.
with raw as (
    select * from raw_referral_events
),

typed as (
    select
        raw.*,
        as_date(raw.event_date) as event_date_d,
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
            when event_id is null or partner_id is null or deal_id is null or event_type is null
                or event_date is null then 'missing_value'
            when event_type = 'signed_agreement' and (first_year_contract_value is null or currency is null)
                then 'missing_value'
            when event_date_d is null then 'bad_date'
            when event_type not in ('qualified_lead', 'signed_agreement', 'successful_delivery') then 'bad_value'
            when event_type = 'signed_agreement' and digits is null then 'unknown_currency'
            when event_type = 'signed_agreement' and (not is_money(first_year_contract_value) or first_year_contract_value like '-%')
                then 'bad_amount'
            when event_type = 'signed_agreement' and decimals_of(first_year_contract_value) > digits then 'too_many_decimals'
            when event_date_d not between $month_start and $month_end then 'date_outside_month'
            when not known_partner then 'unknown_partner'
        end as reason_code
    from typed
)

select
    row_number,
    event_id,
    partner_id,
    customer_id,
    deal_id,
    event_type,
    event_date_d as event_date,
    case when reason_code is null and event_type = 'signed_agreement' then currency end as currency,
    case when reason_code is null and event_type = 'signed_agreement' then digits end as digits,
    case when reason_code is null and event_type = 'signed_agreement' then to_minor(first_year_contract_value, digits) end
        as first_year_value_minor,
    reason_code,
    case reason_code
        when 'missing_value' then 'a required value is blank (event_id, partner_id, deal_id, event_type, event_date; first_year_contract_value and currency for signed_agreement)'
        when 'bad_date' then 'event_date ' || event_date || ' is not a YYYY-MM-DD date'
        when 'bad_value' then 'event_type ' || event_type || ' is not qualified_lead, signed_agreement or successful_delivery'
        when 'unknown_currency' then 'currency ' || currency || ' is not an ISO 4217 code'
        when 'bad_amount' then 'first_year_contract_value ' || first_year_contract_value || ' is not a non-negative decimal'
        when 'too_many_decimals' then 'first_year_contract_value ' || first_year_contract_value || ' has more decimals than ' || currency || ' allows'
        when 'date_outside_month' then 'event_date ' || event_date || ' is outside the export month ' || strftime($month_start, '%Y-%m')
        when 'unknown_partner' then 'partner ' || partner_id || ' is not in partners.csv'
    end as message
from checked
