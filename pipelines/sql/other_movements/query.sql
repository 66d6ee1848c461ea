-- the month's other movements: clawbacks, referral fees, fees and adjustments (tens of thousands of rows; the
-- shares are the view share_movements, and new_movements is the two together). signed from the
-- partner's side (+ the company owes the partner, - the partner owes the company), in minor units
-- of the movement's own currency. referral fees become payable in the month of date + holding_days;
-- clawbacks, fees and adjustments at once. fees are netted only when net_fees is true; adjustments
-- always (SPEC section 7), with their reason as the note; posted restatements likewise.
select *, payable_month <= $billing_month as payable
from (
select
    $billing_month as billing_month,
    'clawback:' || line_id || ':' || credit_key as movement_id,
    partner_id,
    'clawback' as kind,
    invoice_date as entry_date,
    currency,
    digits,
    clawback_minor as amount_minor,
    $billing_month as payable_month,
    true as netted,
    source_file,
    line_id as record_id,
    customer_id,
    item,
    amount_minor as billed_minor,
    credit_pct,
    rate,
    refers_to_line_id as refers_to,
    'refund of ' || refers_to_line_id || ': ' || fmt_money(amount_minor, digits) || ' of '
        || fmt_money(original_minor, digits) || ' on a share of ' || fmt_money(original_share_minor, digits) as note
from clawbacks
union all
select
    $billing_month,
    'referral:' || event_id,
    partner_id,
    'referral_fee',
    event_date,
    fee_currency,
    fee_digits,
    fee_minor,
    left(cast(event_date + $holding_days::integer as varchar), 7),
    true,
    source_file,
    event_id,
    customer_id,
    event_type,
    first_year_value_minor,
    null,
    case when event_type = 'signed_agreement' then pct_of_first_year_value end,
    deal_id,
    'deal ' || deal_id
from referral_fees
where report_code is null
union all
select
    $billing_month,
    'fee:' || fee_id,
    partner_id,
    'fee',
    fee_date,
    currency,
    digits,
    -amount_minor,
    $billing_month,
    $net_fees,
    $partner_fees_file,
    fee_id,
    null,
    fee_type,
    amount_minor,
    null,
    null,
    null,
    case when $net_fees then null else 'shown, not netted (payout.net_fees is false)' end
from fees
union all
select
    $billing_month,
    'adjustment:' || adjustment_id,
    partner_id,
    'adjustment',
    null,
    currency,
    digits,
    amount_minor,
    $billing_month,
    true,
    $adjustments_file,
    adjustment_id,
    null,
    null,
    null,
    null,
    null,
    null,
    reason || ' (entered by ' || entered_by || ')'
from month_adjustments
union all
-- a posted restatement (payouts run --restate): the difference a locked month's earnings show when
-- recomputed with today's reference data, payable at once (pipelines/rules/restatement.py)
select
    $billing_month,
    'restatement:' || locked_month || ':' || partner_id || ':' || currency,
    partner_id,
    'restatement',
    null,
    currency,
    digits,
    difference_minor,
    $billing_month,
    true,
    null,
    locked_month,
    null,
    null,
    null,
    null,
    null,
    locked_month,
    note
from restatement_differences
where posted
)
