-- every movement open in month m: carried from earlier months or new. the balances read it.
select * from carried_movements
union all by name
select * from new_movements
