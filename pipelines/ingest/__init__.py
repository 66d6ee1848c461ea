"""Ingest: every input file read as text with each record's physical line, type-checked row by row
(sql/<file>_checked), bad rows quarantined with a reason, never dropped. Imports only core."""
