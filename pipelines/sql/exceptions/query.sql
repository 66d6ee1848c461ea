-- every quarantined row and every reported non-payment, with file, physical row and reason code.
with rows as (
    select 'quarantined' as kind, source_file, row_number, record_id, reason_code, message from month_quarantine
    union all
    select 'reported', source_file, row_number, record_id, report_code, report_message
    from referral_fees
    where report_code is not null
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
