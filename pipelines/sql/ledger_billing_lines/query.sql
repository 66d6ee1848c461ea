-- minor units of the line's own currency
select
    $billing_month as billing_month, line_id, source, line_type, invoice_date, customer_id, item,
    currency, digits, amount_minor, source_file, row_number
from (select * from charge_lines union all by name select * from refunds)
