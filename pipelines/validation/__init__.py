"""Validation: Great Expectations suites on the inputs (dataset-level checks SQL quarantine cannot
make) and gates on the results (reconciled against totals computed independently), with an
offline report. Imports core."""
