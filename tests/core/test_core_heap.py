"""The serving process freezes its startup heap: later full collections skip it, and what the
requests allocate afterwards is still collected."""

from __future__ import annotations

import gc
import weakref

from gateway.core.heap import freeze_startup_heap


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_startup_objects_are_frozen_and_later_garbage_still_collected() -> None:
    kept = [Node() for _ in range(1000)]  # what startup built and keeps
    try:
        frozen = freeze_startup_heap()
        assert frozen >= len(kept)
        # Frozen: in none of the generations a collection walks (get_objects lists those).
        walked = {id(o) for o in gc.get_objects()}
        assert not any(id(node) in walked for node in kept)
        # A request's reference cycle, dropped: only the collector can free it.
        a, b = Node(), Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        gc.collect()
        assert gone() is None
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual
