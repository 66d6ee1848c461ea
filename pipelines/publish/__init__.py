"""Publish: the month's files (remittance, partner balances, statements, exceptions, summary with its
control totals, manifest), written from the rules' tables so the same inputs give the same bytes.
Imports core, ledger and rules."""
