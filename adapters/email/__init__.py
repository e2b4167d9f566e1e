"""Email: the SMTP intake for soporte@callmyway.com and the mail the gateway sends back.

Wire: SMTP (RFC 5321) in, through an aiosmtpd server on the gateway's own event loop: RCPT
refused for anything but the support mailboxes, 250 to DATA only after the raw message is
committed, the body extracted after the commit. Out: acknowledgements and agent replies as MIME
(RFC 5322, `Auto-Submitted`, RFC 3834) through the relay of `GATEWAY_SMTP_RELAY`; delivery
reports (RFC 3464) are linked to the mail they report on.
"""

from adapters.email.smtp import setup

__all__ = ["setup"]
