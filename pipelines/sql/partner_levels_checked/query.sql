-- partner_levels.csv typed; a partner's level on a date is its row with the latest effective_from on or before it.
with raw as (
    select * from raw_partner_levels
),

typed as (
    select
        raw.*,
        as_date(raw.effective_from) as effective_from_date,
        p.partner_id is not null as known_partner,
        row_number() over (partition by raw.partner_id, raw.effective_from order by raw.row_number) as id_rank
    from raw
    left join partners as p on p.partner_id = raw.partner_id
),

checked as (
    select
        *,
        case
            when partner_id is null or level is null or effective_from is null then 'missing_value'
            when effective_from_date is null then 'bad_date'
            when level not in ('registered', 'certified', 'strategic') then 'bad_value'
            when not known_partner then 'unknown_partner'
            when id_rank > 1 then 'duplicate_id'
        end as reason_code
    from typed
)

select
    row_number,
    partner_id,
    level,
    effective_from_date as effective_from,
    reason_code,
    case reason_code
        when 'missing_value' then 'partner_id, level and effective_from are required'
        when 'bad_date' then 'effective_from ' || effective_from || ' is not a YYYY-MM-DD date'
        when 'bad_value' then 'level ' || level || ' is not registered, certified or strategic'
        when 'unknown_partner' then 'partner ' || partner_id || ' is not in partners.csv'
        when 'duplicate_id' then 'partner ' || partner_id || ' already has a level from ' || effective_from
    end as message
from checked
