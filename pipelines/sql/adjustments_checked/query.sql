-- adjustments.csv typed: corrections finance enters for the month (SPEC section 7). amount_minor in
-- minor units of the adjustment's currency: > 0 is owed to the partner, < 0 is recovered from it.
with raw as (
    select * from raw_adjustments
),

typed as (
    select
        raw.*,
        c.digits,
        p.partner_id is not null as known_partner,
        row_number() over (partition by raw.adjustment_id order by raw.row_number) as id_rank
    from raw
    left join currencies as c on c.code = raw.currency
    left join partners as p on p.partner_id = raw.partner_id
),

checked as (
    select
        *,
        case
            when adjustment_id is null or partner_id is null or currency is null or amount is null
                or reason is null or entered_by is null then 'missing_value'
            when digits is null then 'unknown_currency'
            when not is_money(amount) then 'bad_amount'
            when decimals_of(amount) > digits then 'too_many_decimals'
            when to_minor(amount, digits) = 0 then 'bad_amount'
            when not known_partner then 'unknown_partner'
            when id_rank > 1 then 'duplicate_id'
        end as reason_code
    from typed
)

select
    row_number,
    adjustment_id,
    partner_id,
    currency,
    digits,
    case when reason_code is null then to_minor(amount, digits) end as amount_minor,
    reason,
    entered_by,
    reason_code,
    case reason_code
        when 'missing_value'
            then 'a required value is blank (adjustment_id, partner_id, currency, amount, reason, entered_by)'
        when 'unknown_currency' then 'currency ' || currency || ' is not an ISO 4217 code'
        when 'bad_amount' then 'amount ' || amount || ' is not a non-zero decimal number'
        when 'too_many_decimals' then 'amount ' || amount || ' has more decimals than ' || currency || ' allows (' || digits || ')'
        when 'unknown_partner' then 'partner ' || partner_id || ' is not in partners.csv'
        when 'duplicate_id' then 'adjustment_id ' || adjustment_id || ' was already used on an earlier row'
    end as message
from checked
