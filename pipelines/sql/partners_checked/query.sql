-- partners.csv typed, each row with the first reason it cannot be used (null: usable).
-- min_payout is in the partner's payout currency, minor units; withholding_tax_pct blank = 0.
with raw as (
    select * from raw_partners
),

typed as (
    select
        raw.*,
        c.digits as payout_digits,
        row_number() over (partition by raw.partner_id order by raw.row_number) as id_rank
    from raw
    left join currencies as c on c.code = raw.payout_currency
),

checked as (
    select
        *,
        case
            when partner_id is null then 'missing_value'
            -- the id names the partner's statement file (percent-encoded, docs/rules.md): bounded so
            -- that every file name fits the file system's 255 bytes
            when strlen(partner_id) > 64 then 'id_too_long'
            when id_rank > 1 then 'duplicate_id'
            when name is null or payout_currency is null or payout_method is null or status is null
                then 'missing_value'
            when payout_digits is null then 'unknown_currency'
            when payout_method not in ('bank_transfer', 'paypal', 'none') then 'bad_value'
            when status not in ('active', 'suspended', 'terminated') then 'bad_value'
            when withholding_tax_pct is not null and not is_pct(withholding_tax_pct) then 'bad_value'
            when min_payout is not null and (not is_money(min_payout) or min_payout like '-%') then 'bad_amount'
            when min_payout is not null and decimals_of(min_payout) > payout_digits then 'too_many_decimals'
        end as reason_code
    from typed
)

select
    row_number,
    partner_id,
    name,
    payout_currency,
    payout_digits,
    payout_method,
    account_ref,
    country,
    bank_code,
    account_type,
    coalesce(try_cast(withholding_tax_pct as decimal(9, 4)), 0) as withholding_tax_pct,
    status,
    case when reason_code is null and min_payout is not null then to_minor(min_payout, payout_digits) end
        as min_payout_minor,
    reason_code,
    case reason_code
        when 'missing_value' then 'a required value (partner_id, name, payout_currency, payout_method, status) is blank'
        when 'id_too_long' then 'partner_id is ' || strlen(partner_id) || ' bytes long; the limit is 64'
        when 'duplicate_id' then 'partner_id ' || partner_id || ' already used on an earlier row'
        when 'unknown_currency' then 'payout_currency ' || payout_currency || ' is not an ISO 4217 code'
        when 'bad_value' then 'payout_method, status or withholding_tax_pct has a value outside the allowed set: '
            || payout_method || ', ' || status || ', ' || coalesce(withholding_tax_pct, '')
        when 'bad_amount' then 'min_payout ' || min_payout || ' is not a non-negative decimal'
        when 'too_many_decimals' then 'min_payout ' || min_payout || ' has more decimals than ' || payout_currency || ' allows'
    end as message
from checked
