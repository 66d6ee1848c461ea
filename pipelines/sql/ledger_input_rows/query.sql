-- rows read from each input file this month (the input gate compares a month with earlier ones)
select $billing_month as billing_month, file, rows_read from file_rows
