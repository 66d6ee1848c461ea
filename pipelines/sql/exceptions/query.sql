-- every quarantined row and every reported non-payment, with file, physical row and reason code.
with rows as (
    select 'quarantined' as kind, source_file, row_number, record_id, reason_code, message from month_quarantine
    union all
    select 'reported', source_file, row_number, record_id, report_code, report_message
    from referral_fees
    where report_code is not null
    union all
    -- a partner paid this month whose bank details no payment file can carry (sql/payment_routes):
    -- finance sees it before approving. the message never holds more of an account than its last 4
    select 'reported', $partners_file, p.row_number, r.partner_id, 'bank_details_unusable', r.unusable_message
    from payment_routes as r
    join partners as p on p.partner_id = r.partner_id
    where r.unusable_reason is not null
    union all
    -- an export of a locked month changed after it was locked (sql/locked_input_changes): reported,
    -- never applied
    select 'reported', source_file, null, locked_month, 'locked_input_changed', message
    from locked_input_changes
)

select
    kind,
    source_file,
    row_number,
    safe_text(record_id) as record_id,
    reason_code,
    safe_text(message) as message
from rows
order by kind, source_file, row_number, reason_code
