-- earlier months' movements still open in month m (pending under the holding period, or held for
-- a missing fx rate); with the month's new movements they make the view open_movements.
-- payable: in m's balance now; otherwise pending (an earning whose date + holding_days is after m).
select
    m.*,
    m.payable_month <= $billing_month as payable
from ledger.movements as m
where m.billing_month < $billing_month
  and not exists (
      select 1 from ledger.settlements as s
      where s.movement_id = m.movement_id and s.billing_month < $billing_month
  )
