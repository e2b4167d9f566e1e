"""The serving process's hand-off of the GIL between the event loop and its worker threads.

The event loop shares one interpreter with threads that run Python for stretches: the email
body extraction (one ~8 KB multipart message is about half a millisecond of parsing, a pass
of them tens of milliseconds) and the database threads building rows. CPython gives the GIL
to a waiting thread only once the running one has held it for the switch interval, 5 ms by
default. While bodies were being extracted, every time a socket woke the event loop it waited
up to those 5 ms, and one SMTP message wakes it four to six times: one message at a time, the
gateway's p99 was 26-29 ms against the bare sink's 2 ms (bench/smtp.py). With the interval at
half a millisecond the loop waits at most that long: that p99 fell to 10-13 ms, a 50-client
burst was answered 20 % faster, and under the mixed load of 200 contacts/s on SQLite every
channel's p99 to a tracking number halved (chat 71-97 to 36-43 ms; bench/mixed.py), for the
same CPU per contact. A thread that holds the GIL alone is not interrupted at all.
"""

from __future__ import annotations

import logging
import sys

log = logging.getLogger(__name__)
SWITCH_INTERVAL = 0.0005  # seconds; CPython's default is 0.005


def quick_gil_handoff(interval: float = SWITCH_INTERVAL) -> float:
    """Set the interpreter's switch interval for a serving process; returns the previous one."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(interval)
    log.info("GIL switch interval %.1f ms (was %.1f ms)", interval * 1000, previous * 1000)
    return previous
