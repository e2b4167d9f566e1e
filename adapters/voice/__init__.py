"""The phone lines of the 11 countries: calls to a line become incidents, with voicemail.

Wire: Twilio Programmable Voice webhooks (`POST /webhooks/twilio/voice`, signed forms),
answered with TwiML: the tracking number spoken, the caller connected to the line's L1, or the
hours and a voicemail after hours; agents' phone replies are calls placed through `twilio`.
"""

from adapters.voice.webhook import setup

__all__ = ["setup"]
