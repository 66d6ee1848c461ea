"""Partner payouts: billing exports in; remittance, statements, exceptions and control totals out.

The packages are floors, each importing only those below it:

    core        money, billing months, program.yaml                       (imports nothing of ours)
    ingest      read the exports, type-check every row, quarantine
    ledger      what carries month to month; the output root's lock and staging
    rules       the payout rules: the declared SQL relations under sql/ and their runner
    publish     remittance, statements, exceptions, summary, manifest
    validation  Great Expectations gates on the inputs and the results
    payments    bank and PayPal files from an approved remittance
    demo        `payouts sample`: a realistic demo input tree

`engine` (the step API), `cli` and the Airflow DAG sit on top and call the same functions.
"""
