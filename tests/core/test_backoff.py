"""Backoff: the nominal schedule, its cap, and a jitter that stays around it."""

from __future__ import annotations

import random
from typing import Any

import pytest

from spoc.workers import Backoff

pytestmark = pytest.mark.no_processes  # nothing here depends on the start method


def test_the_nominal_schedule_grows_then_caps() -> None:
    backoff = Backoff(base=0.1, factor=2, cap=1.0, jitter=0)
    assert [backoff.delay(n) for n in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert backoff.nominal(10_000) == 1.0  # no overflow for huge attempts


def test_jitter_stays_within_its_band_and_does_not_accumulate() -> None:
    backoff = Backoff(base=1.0, factor=1.0, cap=1.0, jitter=0.2)
    rng = random.Random(7)
    delays = [backoff.delay(n, rng) for n in range(1000)]
    assert all(0.8 <= d <= 1.2 for d in delays)
    assert sum(delays) / len(delays) == pytest.approx(1.0, abs=0.02)  # centred on the schedule


@pytest.mark.parametrize(
    "kwargs",
    [{"base": -1}, {"factor": 0.5}, {"cap": 0.01, "base": 1}, {"jitter": 1}, {"base": float("nan")}],
)
def test_bad_parameters_are_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="Backoff"):
        Backoff(**kwargs)
