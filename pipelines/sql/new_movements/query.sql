-- every movement the month adds: its shares (a view over credits, never copied) and its other
-- movements. signed from the partner's side, minor units of the movement's own currency.
select * from share_movements
union all by name
select * from other_movements
