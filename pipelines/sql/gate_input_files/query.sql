-- the input_files suite's frame: each input file's rows read and quarantined, and the average rows
-- read in up to 3 earlier months (null when the ledger has none: a first month, or a new file).
-- quarantined counts ingest's refusals; the result gate counts the month's final ones.
with quarantined as (
    select source_file, count(*) as n from quarantine group by all
),

history as (
    select file, rows_read, row_number() over (partition by file order by billing_month desc) as back
    from ledger.input_rows
    where billing_month < $billing_month
),

previous as (
    select file, avg(rows_read) as previous_rows from history where back <= 3 group by all
)

select
    f.file,
    f.source_file as label,
    f.rows_read,
    coalesce(q.n, 0) as rows_quarantined,
    round(p.previous_rows)::bigint as previous_rows
from file_rows as f
left join quarantined as q on q.source_file = f.source_file
left join previous as p on p.file = f.file
order by f.file
