"""Hypothesis profiles of the fuzz tests (README "Robustness").

`ci` (the default) is small and derandomized, so the suite's cost stays bounded and a failure
repeats; `HYPOTHESIS_PROFILE=long` runs many more random examples for a fuzzing session.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_QUIET = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large]
settings.register_profile(
    "ci",
    max_examples=40,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=_QUIET,
)
settings.register_profile(
    "long", max_examples=2000, deadline=None, suppress_health_check=_QUIET, print_blob=True
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
