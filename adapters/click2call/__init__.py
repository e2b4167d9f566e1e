"""Click2Call: the website's call-back button becomes an incident and a call to the customer.

Wire: JSON `POST /api/v1/click2call` from the website (origin allow-list, `Idempotency-Key`),
answered 202 with the tracking number; the call is placed through Twilio's Calls API (at once
in hours, when the line opens otherwise), every attempt recorded in a ledger before the API call.
"""

from adapters.click2call.web import setup

__all__ = ["setup"]
