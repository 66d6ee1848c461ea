-- partner_fees.csv typed; amount_minor > 0 means the partner owes the company (minor units of the fee currency).
with raw as (
    select * from raw_partner_fees
),

typed as (
    select
        raw.*,
        as_date(raw.fee_date) as fee_date_d,
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
            when fee_id is null or partner_id is null or fee_date is null or fee_type is null
                or currency is null or amount is null then 'missing_value'
            when fee_date_d is null then 'bad_date'
            when digits is null then 'unknown_currency'
            when not is_money(amount) then 'bad_amount'
            when decimals_of(amount) > digits then 'too_many_decimals'
            when fee_date_d not between $month_start and $month_end then 'date_outside_month'
            when not known_partner then 'unknown_partner'
        end as reason_code
    from typed
)

select
    row_number,
    fee_id,
    partner_id,
    fee_date_d as fee_date,
    fee_type,
    currency,
    digits,
    case when reason_code is null then to_minor(amount, digits) end as amount_minor,
    reason_code,
    case reason_code
        when 'missing_value' then 'a required value is blank (fee_id, partner_id, fee_date, fee_type, currency, amount)'
        when 'bad_date' then 'fee_date ' || fee_date || ' is not a YYYY-MM-DD date'
        when 'unknown_currency' then 'currency ' || currency || ' is not an ISO 4217 code'
        when 'bad_amount' then 'amount ' || amount || ' is not a decimal number'
        when 'too_many_decimals' then 'amount ' || amount || ' has more decimals than ' || currency || ' allows (' || digits || ')'
        when 'date_outside_month' then 'fee_date ' || fee_date || ' is outside the export month ' || strftime($month_start, '%Y-%m')
        when 'unknown_partner' then 'partner ' || partner_id || ' is not in partners.csv'
    end as message
from checked
