-- attributions.csv typed; credit_pct blank means 100; valid_to blank means open-ended (both ends inclusive).
with raw as (
    select * from raw_attributions
),

typed as (
    select
        raw.*,
        as_date(raw.valid_from) as valid_from_date,
        as_date(raw.valid_to) as valid_to_date,
        p.partner_id is not null as known_partner,
        row_number() over (partition by raw.claim_id order by raw.row_number) as id_rank
    from raw
    left join partners as p on p.partner_id = raw.partner_id
),

checked as (
    select
        *,
        case
            when claim_id is null then 'missing_value'
            when id_rank > 1 then 'duplicate_id'
            when customer_id is null or partner_id is null or source is null or engagement_type is null
                or valid_from is null or status is null then 'missing_value'
            when valid_from_date is null or (valid_to is not null and valid_to_date is null) then 'bad_date'
            when valid_to_date < valid_from_date then 'bad_date'
            when source not in ('partner_of_record', 'deal_registration', 'referral_link') then 'bad_value'
            when engagement_type not in ('partner_led', 'company_led', 'joint') then 'bad_value'
            when status not in ('approved', 'pending', 'rejected') then 'bad_value'
            when credit_pct is not null and not (is_pct(credit_pct) and credit_pct::decimal(9, 4) > 0) then 'bad_value'
            when not known_partner then 'unknown_partner'
        end as reason_code
    from typed
)

select
    row_number,
    claim_id,
    customer_id,
    partner_id,
    source,
    -- precedence: partner_of_record (1) > deal_registration (2) > referral_link (3)
    case source when 'partner_of_record' then 1 when 'deal_registration' then 2 else 3 end as source_rank,
    engagement_type,
    coalesce(try_cast(credit_pct as decimal(9, 4)), 100) as credit_pct,
    valid_from_date as valid_from,
    valid_to_date as valid_to,
    status,
    reason_code,
    case reason_code
        when 'missing_value' then 'claim_id, customer_id, partner_id, source, engagement_type, valid_from and status are required'
        when 'duplicate_id' then 'claim_id ' || claim_id || ' already used on an earlier row'
        when 'bad_date' then 'valid_from/valid_to ' || coalesce(valid_from, '') || '/' || coalesce(valid_to, '') || ' are not YYYY-MM-DD dates in order'
        when 'bad_value' then 'source, engagement_type, status or credit_pct is outside the allowed values: '
            || source || ', ' || engagement_type || ', ' || status || ', ' || coalesce(credit_pct, '')
        when 'unknown_partner' then 'partner ' || partner_id || ' is not in partners.csv'
    end as message
from checked
