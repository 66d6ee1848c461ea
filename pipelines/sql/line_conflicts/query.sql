-- billing rows whose line_id is taken (few): by an earlier month, or earlier in this month (the
-- subscription file first, then the project file, each in row order); the earlier row keeps it.
-- (source_rank, row_number) identifies a row of the month: 1 = subscription file, 2 = project file.
with ids as (
    select 1 as source_rank, row_number, line_id from subscription_billing
    union all
    select 2, row_number, line_id from project_billing
),

repeated_hashes as (
    -- 64-bit hashes of the line ids that occur more than once in the files as read (found by ingest
    -- for the input suites: gates.run_input_suites). grouping integers is far cheaper than grouping
    -- 10M strings; every id that repeats among the usable rows is among them, since those rows are
    -- some of the rows read (a hash collision only adds a candidate)
    select h from repeated_line_hashes
),

repeated as (
    -- ids that occur more than once this month, checked exactly
    select line_id
    from ids
    where hash(line_id) in (select h from repeated_hashes)
    group by line_id
    having count(*) > 1
),

used_before as (
    -- ids of this month already taken by an earlier month (few; probes the ledger once)
    select distinct b.line_id
    from ledger.billing_lines as b
    semi join ids as u on u.line_id = b.line_id
    where b.billing_month < $billing_month
),

ranked as (
    select
        u.source_rank,
        u.row_number,
        u.line_id,
        row_number() over (partition by u.line_id order by u.source_rank, u.row_number) as id_rank,
        u.line_id in (select line_id from used_before) as was_used
    from ids as u
    where u.line_id in (select line_id from repeated union select line_id from used_before)
)

select
    source_rank,
    row_number,
    'duplicate_line_id' as reason_code,
    case
        when was_used then 'line_id ' || line_id || ' was already used in an earlier month'
        else 'line_id ' || line_id || ' was already used on an earlier row this month'
    end as message
from ranked
where was_used or id_rank > 1
