-- the month's adjustments with an adjustment_id no earlier month used (ids are unique across months).
-- amount_minor: minor units of the adjustment's currency, + owed to the partner, - recovered.
with ranked as (
    select
        a.*,
        lg.adjustment_id is not null as id_used_before
    from adjustments as a
    left join (select distinct adjustment_id from ledger.adjustments where billing_month < $billing_month) as lg
        on lg.adjustment_id = a.adjustment_id
)

select
    * exclude (id_used_before),
    $adjustments_file as source_file,
    adjustment_id as record_id,
    case when id_used_before then 'duplicate_id' end as reason_code,
    case when id_used_before then 'adjustment_id ' || adjustment_id || ' was already used in an earlier month' end
        as message
from ranked
