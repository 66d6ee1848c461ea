-- the usable charges with the two terms the share rules add (agreement version, fx rate, from
-- charge_terms): sub_shares and the tier tables read this, not `charges`, whose credit-total
-- join they do not need.
select t.*
from charge_terms as t
anti join refused_charges as r on r.source = t.source and r.row_number = t.row_number
