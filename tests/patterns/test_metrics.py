"""Job processors' and stage workers' figures: ``/metrics`` of a running Server, and ``jobs_done()``.

The figures are read in the parent at each scrape, from the counters the
consume loop keeps (shared memory for process workers), so a process
worker's totals and histogram must be exact in the parent. Queues are
``queue.Queue`` for threads and a ``multiprocessing.JoinableQueue`` of this
run's start method for processes; every wait is ``join()`` on the queue.
"""

from __future__ import annotations

import multiprocessing
import queue
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("prometheus_client", reason="the http extra of spoc-workers-core is not installed")

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

import patterns_targets as pt
from ops_targets import request
from spoc.workers import Recycle, Server
from spoc.workers.patterns._consume import BUCKET_FIELDS, DURATION_BUCKETS, DURATION_FIELDS, SUM_FIELD
from spoc.workers.patterns._support import Counters
from targets import Events, wait_for

THREAD_ONLY = pytest.mark.no_processes
KINDS = [pytest.param("thread", marks=THREAD_ONLY), "process"]
N = 23  # jobs 0..22: the multiples of 4 (0, 4, ..., 20) fail
FAILING = len(range(0, N, 4))


def _scrape(server: Server) -> dict[str, Any]:
    status, _, body = request(server, "/metrics")
    assert status == 200
    return {family.name: family for family in text_string_to_metric_families(body.decode())}


def _value(families: dict[str, Any], family: str, name: str, **labels: str) -> float:
    found = [
        s.value
        for s in families[family].samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, (family, name, labels, families[family].samples)
    return float(found[0])


def _check_histogram(families: dict[str, Any], family: str, count: int, **labels: str) -> None:
    """``count`` observations, cumulative buckets at the fixed bounds ending in +Inf == count."""
    assert _value(families, family, f"{family}_count", **labels) == count
    buckets = [s for s in families[family].samples if s.name == f"{family}_bucket"]
    bounds = [s.labels["le"] for s in buckets]
    assert bounds == [*map(floatToGoString, DURATION_BUCKETS), "+Inf"], bounds
    values = [s.value for s in buckets]
    assert values == sorted(values) and values[-1] == count
    assert 0 <= _value(families, family, f"{family}_sum", **labels) < 60


def _jobs(kind: str, start_method: str) -> tuple[Any, Any]:
    if kind == "thread":
        jobs: Any = queue.Queue()
        return jobs, pt.MeteredJobs("jobs", jobs)
    jobs = multiprocessing.get_context(start_method).JoinableQueue()
    return jobs, pt.ProcessMeteredJobs("jobs", jobs, start_method=start_method)


@pytest.fixture
def closing() -> Iterator[list[Any]]:
    """Queues to close once the test is done (a multiprocessing queue's feeder thread)."""
    queues: list[Any] = []
    yield queues
    for q in queues:
        pt.close_queue(q)


@pytest.mark.parametrize("kind", KINDS)
def test_a_scrape_reads_a_job_processors_totals_and_durations_exactly(
    kind: str, start_method: str, closing: list[Any]
) -> None:
    jobs, worker = _jobs(kind, start_method)
    closing.append(jobs)
    server = Server("metered", http="127.0.0.1:0")
    server.add_worker(worker)
    with server:
        server.start()
        for job in range(N):
            jobs.put(job)
        jobs.join()  # every job accounted for: counted before the queue is told
        families = _scrape(server)
    labels = {"server": "metered", "worker": "jobs"}
    assert _value(families, "spoc_jobs", "spoc_jobs_total", outcome="done", **labels) == N - FAILING
    assert _value(families, "spoc_jobs", "spoc_jobs_total", outcome="failed", **labels) == FAILING
    _check_histogram(families, "spoc_job_duration_seconds", N, **labels)
    assert worker.jobs_done() == N
    assert (worker.stats.processed, worker.stats.failed) == (N - FAILING, FAILING)


class _MeteredSource(queue.Queue):  # type: ignore[type-arg]
    """A queue that reports a family of its own, as a job source (a Redis stream) may."""

    def collect_metrics(self) -> list[Metric]:
        family = GaugeMetricFamily("spoc_source_backlog", "Jobs waiting.", labels=["source"])
        family.add_metric(["orders"], float(self.qsize()))
        return [family]


@THREAD_ONLY
def test_a_job_processor_passes_on_its_job_sources_families() -> None:
    jobs = _MeteredSource()
    for job in (1, 2, 3):
        jobs.put(job)
    server = Server("sourced", http="127.0.0.1:0")
    worker = pt.MeteredJobs("reader", jobs)
    server.add_worker(worker)
    families = {family.name: family for family in worker.collect_metrics()}
    assert families["spoc_source_backlog"].samples[0].value == 3  # before the start: all waiting
    with server:
        server.start()
        jobs.join()
        scraped = _scrape(server)
    assert (
        _value(scraped, "spoc_source_backlog", "spoc_source_backlog", source="orders", worker="reader") == 0
    )
    assert _value(scraped, "spoc_jobs", "spoc_jobs_total", outcome="done", worker="reader") == 3


@pytest.mark.parametrize("kind", KINDS)
def test_a_scrape_reads_a_stage_workers_items_durations_and_queue_depth(
    kind: str, start_method: str, closing: list[Any]
) -> None:
    if kind == "thread":
        inputs: Any = queue.Queue()
        outputs: Any = queue.Queue()
        worker: Any = pt.MeteredStage("stage", inputs, outputs)
    else:
        context = multiprocessing.get_context(start_method)
        inputs, outputs = context.JoinableQueue(), context.Queue()
        closing.extend((inputs, outputs))
        worker = pt.ProcessMeteredStage("stage", inputs, outputs, start_method=start_method)
    for item in range(N):
        inputs.put(item)
    before = {family.name: family for family in worker.collect_metrics()}
    assert before["spoc_stage_queue_depth"].samples[0].value == N  # before the start: all waiting
    server = Server("staged", http="127.0.0.1:0")
    server.add_worker(worker)
    with server:
        server.start()
        inputs.join()
        families = _scrape(server)
    failed, dropped = FAILING, len(range(1, N, 4))
    labels = {"server": "staged", "worker": "stage", "stage": "stage"}
    items = ("spoc_stage_items", "spoc_stage_items_total")
    assert _value(families, *items, outcome="out", **labels) == N - failed - dropped
    assert _value(families, *items, outcome="failed", **labels) == failed
    assert _value(families, *items, outcome="dropped", **labels) == dropped
    _check_histogram(families, "spoc_stage_item_duration_seconds", N, **labels)
    assert _value(families, "spoc_stage_queue_depth", "spoc_stage_queue_depth", **labels) == 0
    assert worker.jobs_done() == N
    got = [outputs.get(timeout=10) for _ in range(N - failed - dropped)]
    assert sorted(got) == [i for i in range(N) if i % 4 > 1]


@pytest.mark.parametrize("kind", KINDS)
def test_recycle_by_jobs_replaces_a_job_processor_after_that_many_jobs(
    kind: str, start_method: str, closing: list[Any]
) -> None:
    jobs, worker = _jobs(kind, start_method)
    closing.append(jobs)
    events = Events()
    server = Server("recycling", on_event=events, max_restarts=0)
    server.add_worker(worker, recycle=Recycle(jobs=5, jitter=0.0, interval=0.02))
    with server:
        server.start()
        # the run's count starts when the parent sees it RUNNING: no job before that
        wait_for(lambda: server.status()[0]["state"] == "running", timeout=30)
        for job in (1, 2, 3, 5):  # four jobs (none failing): not yet
            jobs.put(job)
        jobs.join()
        assert worker.jobs_done() == 4 and not events.of("recycled")
        jobs.put(4)  # the fifth, a failing one: it counts too
        jobs.join()
        wait_for(lambda: events.of("recycled"), timeout=30)
        assert "5 jobs >= 5" in events.of("recycled")[0].message
        wait_for(lambda: server.status()[0]["state"] == "running" and server.status()[0]["restarts"] == 1, 30)
        for job in range(6, 11):  # five more on the fresh run: recycled again
            jobs.put(job)
        jobs.join()
        wait_for(lambda: len(events.of("recycled")) >= 2, timeout=30)
        assert "5 jobs >= 5" in events.of("recycled")[1].message
    assert worker.jobs_done() == 10  # over both runs: the count survives a restart
    assert (worker.stats.processed, worker.stats.failed) == (8, 2)
    assert not server.gave_up


@pytest.mark.parametrize("shared", [pytest.param(False, marks=THREAD_ONLY), True])
def test_an_observation_lands_in_the_first_bucket_whose_bound_holds_it(
    shared: bool, start_method: str
) -> None:
    context = multiprocessing.get_context(start_method) if shared else None
    counters = Counters(("done", *DURATION_FIELDS), context)
    observe = counters.observer(DURATION_BUCKETS, BUCKET_FIELDS, SUM_FIELD)
    for seconds in (0.0, 0.001, 0.0011, 60.0, 61.0):
        observe("done", seconds)
    observe(None, 0.3)  # a duration without an outcome
    values = counters.snapshot()
    assert values["done"] == 5
    assert values["duration_le_0.001"] == 2  # 0 and the bound itself (le: less than or equal)
    assert values["duration_le_0.0025"] == 1
    assert values["duration_le_0.5"] == 1
    assert values["duration_le_60"] == 1 and values["duration_le_inf"] == 1
    assert sum(values[field] for field in BUCKET_FIELDS) == 6
    assert values[SUM_FIELD] == pytest.approx(0.0 + 0.001 + 0.0011 + 60.0 + 61.0 + 0.3)
    with pytest.raises(ValueError, match="consecutive"):
        counters.observer(DURATION_BUCKETS, BUCKET_FIELDS[1:], SUM_FIELD)
