select $billing_month as billing_month, movement_id
from carried_movements
where (payable or not netted)
    and partner_id not in (select partner_id from held_partners)
