-- ingest's quarantine plus the rows the rules refuse, in a temp table: ingest's table is never
-- written by compute, so a retried compute (an Airflow retry) does not count its rows twice.
select * from quarantine
