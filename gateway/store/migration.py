"""A schema migration step, written for each database the store runs on.

Components (the core, the workspace, each channel) list their own `Migration`s; the store applies
the pending ones in order at start, each atomically, and records them in `schema_migrations`.
"""

from __future__ import annotations

from typing import NamedTuple


class Migration(NamedTuple):
    """One schema step: its version within its component, in each database's dialect."""

    version: int
    sqlite: str
    postgresql: str


Plan = list[tuple[str, list[Migration]]]  # (component, its migrations) in the order to apply
