"""The serving process's heap after startup.

By the time `serve` accepts its first request it holds some hundred thousand long-lived
objects: modules, the phone-number metadata, the templates, the routing tables. CPython's
full (generation 2) collections walk every tracked object, so under load each one stalled
the event loop for tens of milliseconds (87 ms measured at 200 contacts/s, bench/mixed.py),
a pause every request in flight waited through. `gc.freeze()` (CPython's documented answer,
Python 3.7+) moves what startup built into a permanent generation the collector skips; what
the requests allocate afterwards is collected as before.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


def freeze_startup_heap() -> int:
    """Collect startup's garbage, then exempt the survivors from later collections; returns
    how many objects are frozen."""
    gc.collect()  # cycles left by startup would otherwise be kept for good
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("startup heap frozen: %d objects are left out of later garbage collections", frozen)
    return frozen
