-- only what a later month reads: movements still open at month end (pending, or held for a missing
-- rate). settled: a payable or unnetted movement of a partner not held. written as the two kinds of
-- open movement: the first filter reaches the shares' scan, and the held partners (few) are a
-- semi join (one predicate with `not in` built every share movement before filtering).
select * exclude (payable, sort_row, sort_credit, share_source)
from new_movements
where not (payable or not netted)
union all
select * exclude (payable, sort_row, sort_credit, share_source)
from new_movements
where (payable or not netted) and partner_id in (select partner_id from held_partners)
