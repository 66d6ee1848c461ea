-- subscription_billing.csv typed, each row with the first reason it cannot be used.
-- amount_minor: integer minor units of the line's own currency; negative for refunds and chargebacks.
with raw as (
    select * from raw_subscription_billing
),

typed as (
    select
        raw.*,
        as_date(raw.invoice_date) as invoice_date_d,
        as_date(raw.subscription_start) as subscription_start_d,
        c.digits,
        -- minor units, computed once; null when the text is not a number (only read after the checks
        -- below have found it well-formed with at most `digits` decimals)
        to_minor(raw.amount, c.digits) as amount_minor,
        f.product_family is not null as known_family
    from raw
    left join currencies as c on c.code = raw.currency
    left join product_families as f on f.product_family = raw.product_family
),

checked as (
    select
        *,
        case
            when line_id is null or invoice_date is null or customer_id is null or product_family is null
                or currency is null or amount is null or line_type is null then 'missing_value'
            when line_type = 'charge' and subscription_start is null then 'missing_value'
            when line_type in ('refund', 'chargeback') and refers_to_line_id is null then 'missing_value'
            when invoice_date_d is null or (subscription_start is not null and subscription_start_d is null)
                then 'bad_date'
            when line_type not in ('charge', 'refund', 'chargeback') then 'bad_value'
            when digits is null then 'unknown_currency'
            when not is_money(amount) then 'bad_amount'
            when decimals_of(amount) > digits then 'too_many_decimals'
            when line_type = 'charge' and amount_minor < 0 then 'charge_below_zero'
            when line_type <> 'charge' and amount_minor > 0 then 'refund_above_zero'
            when invoice_date_d not between $month_start and $month_end then 'date_outside_month'
            when not known_family then 'unknown_product_family'
        end as reason_code
    from typed
)

-- invoice_id and subscription_id are not staged (ingest.files: unread_columns): no rule reads them,
-- and this table is written to disk for 10M lines a month
select
    row_number,
    line_id,
    invoice_date_d as invoice_date,
    customer_id,
    subscription_start_d as subscription_start,
    product_family,
    currency,
    digits,
    case when reason_code is null then amount_minor end as amount_minor,
    line_type,
    refers_to_line_id,
    reason_code,
    case reason_code
        when 'missing_value' then 'a required value is blank (line_id, invoice_date, customer_id, product_family, currency, amount, line_type; subscription_start for a charge; refers_to_line_id for a refund or chargeback)'
        when 'bad_date' then 'invoice_date ' || coalesce(invoice_date, '') || ' or subscription_start ' || coalesce(subscription_start, '') || ' is not a YYYY-MM-DD date'
        when 'bad_value' then 'line_type ' || line_type || ' is not charge, refund or chargeback'
        when 'unknown_currency' then 'currency ' || currency || ' is not an ISO 4217 code'
        when 'bad_amount' then 'amount ' || amount || ' is not a decimal number'
        when 'too_many_decimals' then 'amount ' || amount || ' has more decimals than ' || currency || ' allows (' || digits || ')'
        when 'charge_below_zero' then 'a charge of ' || amount || ' is below zero'
        when 'refund_above_zero' then 'a ' || line_type || ' of ' || amount || ' is above zero'
        when 'date_outside_month' then 'invoice_date ' || invoice_date || ' is outside the export month ' || strftime($month_start, '%Y-%m')
        when 'unknown_product_family' then 'product_family ' || product_family || ' is not in the rate card'
    end as message
from checked
