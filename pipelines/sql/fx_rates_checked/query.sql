-- fx_rates.csv typed: one unit of currency = rate units of the program currency; at most 10 decimals.
with raw as (
    select * from raw_fx_rates
),

typed as (
    select
        raw.*,
        as_date(raw.rate_date) as rate_date_d,
        c.code is not null as known_currency,
        row_number() over (partition by raw.currency, raw.rate_date order by raw.row_number) as id_rank
    from raw
    left join currencies as c on c.code = raw.currency
),

checked as (
    select
        *,
        case
            when rate_date is null or currency is null or rate is null then 'missing_value'
            when rate_date_d is null then 'bad_date'
            when not known_currency then 'unknown_currency'
            when not regexp_full_match(rate, '[0-9]{1,12}(\.[0-9]{1,10})?') or try_cast(rate as decimal(22, 10)) <= 0
                then 'bad_value'
            when id_rank > 1 then 'duplicate_id'
        end as reason_code
    from typed
)

select
    row_number,
    rate_date_d as rate_date,
    currency,
    try_cast(rate as decimal(22, 10)) as rate,
    reason_code,
    case reason_code
        when 'missing_value' then 'rate_date, currency and rate are required'
        when 'bad_date' then 'rate_date ' || rate_date || ' is not a YYYY-MM-DD date'
        when 'unknown_currency' then 'currency ' || currency || ' is not an ISO 4217 code'
        when 'bad_value' then 'rate ' || rate || ' is not a positive decimal with at most 10 decimals'
        when 'duplicate_id' then currency || ' already has a rate on ' || rate_date
    end as message
from checked
