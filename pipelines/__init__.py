"""Partner payouts: a month's billing exports in; remittance, statements, exceptions and control totals out."""

__version__ = "0.1.0"
