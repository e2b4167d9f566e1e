"""The `Store` protocol: what the core needs from a database, whichever implements it.

A store runs plain synchronous functions of a `Tx` inside a transaction (`transact` for
writes, `read` for a consistent snapshot) and answers only after COMMIT; it raises
`TemporaryFailure` when the database cannot take the work now, so the caller's sender retries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

from gateway.store.migration import Migration
from gateway.store.tx import Tx

T = TypeVar("T")


class Store(Protocol):
    """What the core needs from a database."""

    # Whether other gateway instances may use the same database (PostgreSQL); an SQLite file
    # belongs to one process, which then knows alone what is held in memory (chat sockets).
    shared: bool

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def migrate(self, components: Iterable[tuple[str, list[Migration]]] = ()) -> None: ...
    async def transact(self, fn: Callable[[Tx], T], *, keys: Iterable[str] = ()) -> T:
        """Run `fn` in a write transaction; `keys` are the `Tx.lock_key` keys it will take,
        declared so that a store with concurrent writers takes them first, in one order."""
        ...

    async def read(self, fn: Callable[[Tx], T]) -> T: ...
    async def ping(self) -> bool: ...
    async def follow(self, publish: Callable[[dict[str, Any]], None]) -> None:
        """Publish other instances' committed changes locally until cancelled (returns at once
        where there are no other instances)."""
        ...

    async def broadcast(self, notice: dict[str, Any]) -> None:
        """Hand `notice` to every other instance's `follow` (nothing to do when alone)."""
        ...
