-- the usable charges' own columns, without charges_checked's joins: the lines less the (few)
-- refused ones. the readers that need no agreement version, fx rate or credit total (refunds,
-- clawbacks, control totals, the ledger) read this; each read of `charges` pays its joins again.
-- amounts in minor units of the line's own currency.
select l.*
from lines as l
anti join refused_charges as r on r.source = l.source and r.row_number = l.row_number
where l.line_type = 'charge'
