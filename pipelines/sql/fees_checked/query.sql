-- the month's fees with a fee_id not used before (in an earlier month or an earlier row).
-- amount_minor > 0: the partner owes it (minor units of the fee currency).
with ranked as (
    select
        f.*,
        row_number() over (partition by f.fee_id order by f.row_number) as id_rank,
        lg.fee_id is not null as id_used_before
    from partner_fees as f
    left join (select distinct fee_id from ledger.fee_ids where billing_month < $billing_month) as lg
        on lg.fee_id = f.fee_id
)

select
    * exclude (id_rank, id_used_before),
    $partner_fees_file as source_file,
    fee_id as record_id,
    case when id_used_before or id_rank > 1 then 'duplicate_id' end as reason_code,
    case
        when id_used_before then 'fee_id ' || fee_id || ' was already used in an earlier month'
        when id_rank > 1 then 'fee_id ' || fee_id || ' was already used on an earlier row this month'
    end as message
from ranked
