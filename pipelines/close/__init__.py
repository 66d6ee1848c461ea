"""Month close (SPEC section 7): a computed month is a draft; approval locks it (`approval.json`),
release seals its payment files; the audit log records every run, approval, reopening, discard,
release, login, download and refusal; the users file says who may do what. Imports core and
ledger."""
