"""Twilio: what WhatsApp, the phone lines and Click2Call share with one provider.

Wire: form-encoded webhooks signed with `X-Twilio-Signature` (`signature`), Twilio's REST API
through its async client (`client`), TwiML for calls (`twiml`), outbound calls (`calls`), the
status callbacks of messages and calls (`status`, the registry's `twilio_status`), and the
Fallback URL's disk spool (`spool`).
"""

from adapters.twilio.status import setup

__all__ = ["setup"]
