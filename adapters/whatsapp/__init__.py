"""WhatsApp (+506 4000 4000) through Twilio: inbound messages and the replies agents send.

Wire: Twilio's signed messaging webhook (`POST /webhooks/twilio/whatsapp`, its fallback URL),
answered with TwiML; media fetched from Twilio's API after the commit; replies through the
Messages API within WhatsApp's 24-hour customer-service window.
"""

from adapters.whatsapp.webhook import setup

__all__ = ["setup"]
