-- a partner's level history as intervals [effective_from, next_from): a hash join on partner_id with
-- a range filter finds a line's level without sorting the lines (an as-of join would).
-- no row on or before a date: the partner is registered on it (the readers' coalesce).
select
    partner_id,
    level,
    effective_from,
    lead(effective_from) over (partition by partner_id order by effective_from) as next_from
from partner_levels
