"""Prometheus metrics of a :class:`~spoc.workers.Server`, read from its ``status()`` at scrape time.

Nothing is counted twice and nothing runs between scrapes: a collector turns
the server's own figures into metric families when ``/metrics`` is asked
for. Process workers' figures are the parent's view of them (state, pid,
restarts, the child's memory read from ``/proc``), so no per-process scrape
and no prometheus multiprocess directory is needed.

The families (labels ``server``, ``worker``, ``kind`` on every per-worker one):

* ``spoc_worker_up``: 1 while the worker is RUNNING, else 0;
* ``spoc_worker_state{state}``: 1 for the worker's current state, 0 for the others;
* ``spoc_worker_restarts_total{reason}``: restarts by the server, by reason
  (crash, hang, exit, group, recycle, manual; see ``RestartReason``);
* ``spoc_worker_uptime_seconds``: seconds since the current run reached RUNNING (0 when not running);
* ``spoc_worker_heartbeat_age_seconds``: seconds since the worker's last sign of life (running workers);
* ``spoc_worker_resident_memory_bytes``: a process worker's resident memory (while its child lives);
* ``spoc_server_ready`` and ``spoc_server_gave_up`` (label ``server``): 1 or 0.

Through the hook below, the patterns add (see ``spoc.workers.patterns._metrics``):
``spoc_jobs_total{outcome}`` and ``spoc_job_duration_seconds`` (job
processors), ``spoc_stage_items_total{stage, outcome}``,
``spoc_stage_item_duration_seconds{stage}`` and
``spoc_stage_queue_depth{stage}`` (stage workers).

The registry also forwards prometheus_client's default registry (the
``process_*`` and ``python_*`` families, and whatever the application
registered there).

**Adding families from a worker** (the hook patterns use): a worker may
define ``collect_metrics(self) -> Iterable[prometheus_client.Metric]`` (see
:class:`MetricsProvider`). It is called in the parent process, in the
request's thread, at each scrape; it returns metric families with the
worker's own labels only: ``server`` and ``worker`` are added to each sample
here, and families of the same name from several workers are merged into
one. Names should start with ``spoc_`` and must not be one of the above. A
provider that raises is logged (once) and left out of that scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ._events import RESTART_REASONS
from ._state import WorkerState

if TYPE_CHECKING:
    from ._server import Server

__all__ = ["MetricsProvider", "ServerCollector", "build_registry"]

logger = logging.getLogger("spoc.workers.http")

WORKER_LABELS = ["server", "worker", "kind"]


@runtime_checkable
class MetricsProvider(Protocol):
    """A worker that adds metric families of its own to its server's ``/metrics``.

    See the module docstring.
    """

    def collect_metrics(self) -> Iterable[Metric]:
        """The worker's families, labelled with its own labels only; called at each scrape."""
        ...


class ServerCollector:
    """A prometheus_client collector of one server's figures (see the module docstring)."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._failed_providers: set[str] = set()

    def describe(self) -> list[Metric]:
        """Nothing up front: the families depend on the workers present at each scrape."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The families, from one ``status()`` of the server."""
        server = self._server
        entries = server.status()
        up = GaugeMetricFamily(
            "spoc_worker_up", "1 while the worker is RUNNING, else 0.", labels=WORKER_LABELS
        )
        state = GaugeMetricFamily(
            "spoc_worker_state",
            "1 for the worker's current state, 0 for the other states.",
            labels=[*WORKER_LABELS, "state"],
        )
        restarts = CounterMetricFamily(
            "spoc_worker_restarts",
            "Restarts of the worker by its server, by reason (crash, hang, exit, group, recycle, manual).",
            labels=[*WORKER_LABELS, "reason"],
        )
        uptime = GaugeMetricFamily(
            "spoc_worker_uptime_seconds",
            "Seconds since the worker's current run reached RUNNING; 0 when it is not running.",
            labels=WORKER_LABELS,
        )
        heartbeat = GaugeMetricFamily(
            "spoc_worker_heartbeat_age_seconds",
            "Seconds since the worker's last sign of life (0 while it waits in the framework); "
            "running workers only.",
            labels=WORKER_LABELS,
        )
        memory = GaugeMetricFamily(
            "spoc_worker_resident_memory_bytes",
            "Resident memory of a process worker's child process, in bytes.",
            labels=WORKER_LABELS,
        )
        for entry in entries:
            labels = [server.name, entry["name"], entry["kind"]]
            running = entry["state"] == WorkerState.RUNNING.value
            up.add_metric(labels, 1.0 if running else 0.0)
            for value in WorkerState:
                state.add_metric([*labels, value.value], 1.0 if entry["state"] == value.value else 0.0)
            reasons = entry["restart_reasons"]
            for reason in RESTART_REASONS:
                restarts.add_metric([*labels, reason], float(reasons.get(reason, 0)))
            uptime.add_metric(labels, float(entry["uptime"] or 0.0))
            if entry["last_heartbeat"] is not None:
                heartbeat.add_metric(labels, float(entry["last_heartbeat"]))
            if entry["rss_bytes"] is not None:
                memory.add_metric(labels, float(entry["rss_bytes"]))
        ready = GaugeMetricFamily(
            "spoc_server_ready", "1 when every worker that should run is RUNNING, else 0.", labels=["server"]
        )
        ready.add_metric([server.name], 1.0 if server.readiness()["ready"] else 0.0)
        gave_up = GaugeMetricFamily(
            "spoc_server_gave_up",
            "1 once the server exceeded its restart intensity and stopped everything.",
            labels=["server"],
        )
        gave_up.add_metric([server.name], 1.0 if server.gave_up else 0.0)
        yield from (up, state, restarts, uptime, heartbeat, memory, ready, gave_up)
        yield from self._provided()

    def _provided(self) -> Iterator[Metric]:
        """The families the workers add (see :class:`MetricsProvider`), merged by name."""
        merged: dict[str, Metric] = {}
        for worker in self._server.workers:
            if not isinstance(worker, MetricsProvider):
                continue
            base = {"server": self._server.name, "worker": worker.name}
            try:
                families = list(worker.collect_metrics())
            except Exception:
                if worker.name not in self._failed_providers:
                    self._failed_providers.add(worker.name)
                    logger.exception(
                        "server %r: worker %r: collect_metrics() raised; left out of the metrics",
                        self._server.name,
                        worker.name,
                    )
                continue
            for family in families:
                target = merged.get(family.name)
                if target is None:
                    target = merged[family.name] = Metric(family.name, family.documentation, family.type)
                elif target.type != family.type:
                    logger.warning(
                        "server %r: worker %r: metric %r is a %s here and a %s elsewhere; left out",
                        self._server.name,
                        worker.name,
                        family.name,
                        family.type,
                        target.type,
                    )
                    continue
                for sample in family.samples:
                    target.samples.append(sample._replace(labels={**sample.labels, **base}))
        yield from merged.values()


class _DefaultRegistry:
    """Forwards prometheus_client's default registry (process, platform, the application's own)."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def build_registry(server: Server) -> CollectorRegistry:
    """A registry of its own for ``server``'s endpoint: its collector, and the default registry."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServerCollector(server))
    registry.register(_DefaultRegistry())
    return registry
