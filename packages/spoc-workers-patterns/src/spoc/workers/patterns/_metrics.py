"""The patterns' Prometheus families, made at scrape time from the counters their loop keeps.

Job processors and stage workers define ``collect_metrics()`` (the core's
hook, see ``spoc.workers._metrics``): it runs in the parent process, so
everything it reports is read from the worker's :class:`Counters`, which
live in shared memory for process workers. The duration histogram is kept
the same way: the consume loop adds each handling's duration to a bucket
counter and a sum (``Consumer.account``), and a scrape turns them into a
histogram. This module imports prometheus_client (the ``http`` extra of
spoc-workers-core); the workers import it only when scraped.

The families (the core adds ``server`` and ``worker`` labels):

* ``spoc_jobs_total{outcome}``: jobs a job processor finished, ``done`` or
  ``failed`` (see ``JobStats``);
* ``spoc_job_duration_seconds``: a histogram of ``process_job()``'s duration;
* ``spoc_stage_items_total{stage, outcome}``: items a stage worker finished:
  ``out`` (passed on), ``failed``, ``dropped`` (see ``StageStats``);
* ``spoc_stage_item_duration_seconds{stage}``: a histogram of ``process_item()``'s duration;
* ``spoc_stage_queue_depth{stage}``: items in the stage's input queue, where
  the queue can tell (``qsize()``; not on macOS for multiprocessing queues).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from ._consume import BUCKET_FIELDS, DURATION_BUCKETS, SUM_FIELD

__all__ = ["counter_family", "depth_family", "duration_family"]


def counter_family(
    name: str,
    documentation: str,
    labels: Mapping[str, str],
    values: Mapping[str, float],
    outcomes: Mapping[str, str],
) -> Metric:
    """A counter family ``name{*labels, outcome}``: for each outcome, counter ``outcomes[outcome]``."""
    label_names, label_values = list(labels), list(labels.values())
    family = CounterMetricFamily(name, documentation, labels=[*label_names, "outcome"])
    for outcome, field in outcomes.items():
        family.add_metric([*label_values, outcome], values[field])
    return family


def duration_family(
    name: str, documentation: str, labels: Mapping[str, str], values: Mapping[str, float]
) -> Metric:
    """A histogram family ``name{*labels}`` from the counters :func:`observe` keeps."""
    label_names, label_values = list(labels), list(labels.values())
    buckets: list[tuple[str, float]] = []
    total = 0.0
    for bound, field in zip((*map(floatToGoString, DURATION_BUCKETS), "+Inf"), BUCKET_FIELDS, strict=True):
        total += values[field]
        buckets.append((bound, total))
    family = HistogramMetricFamily(name, documentation, labels=label_names)
    family.add_metric(label_values, buckets, values[SUM_FIELD])
    return family


def depth_family(name: str, documentation: str, labels: Mapping[str, str], q: Any) -> Metric | None:
    """A gauge family ``name{*labels}`` of ``q.qsize()``, or None when the queue cannot tell."""
    qsize = getattr(q, "qsize", None)
    if not callable(qsize):
        return None
    try:
        depth = float(qsize())
    except NotImplementedError:  # a multiprocessing queue on macOS
        return None
    label_names, label_values = list(labels), list(labels.values())
    family = GaugeMetricFamily(name, documentation, labels=label_names)
    family.add_metric(label_values, depth)
    return family
