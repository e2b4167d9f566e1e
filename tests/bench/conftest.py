"""What the benchmark scripts' tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pgcluster import Cluster, find_bindir


@pytest.fixture(scope="module")
def durable_pg() -> Iterator[str]:
    """A durable throwaway PostgreSQL server (fsync on, as the benchmarks require)."""
    bindir = find_bindir()
    assert bindir is not None
    cluster = Cluster(bindir, durable=True).start()
    try:
        yield cluster.url()
    finally:
        cluster.stop()
