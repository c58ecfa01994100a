"""What a server tells about itself: ``status()`` entries and the liveness and readiness probes.

Plain data for JSON, built from the supervisor's records (:class:`Supervised`)
and the workers' public state; the :class:`~spoc.workers.Server` methods of
the same names, the HTTP endpoint, its metrics and status page all read these.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._stacks import all_stacks
from ._state import WorkerState
from ._supervised import Supervised
from ._supervisor import Supervisor

__all__ = ["liveness", "readiness", "status_entries", "status_report"]


def status_entries(records: list[Supervised], now: float) -> list[dict[str, Any]]:
    """One entry per record, as :meth:`Server.status <spoc.workers.Server.status>` describes them."""
    entries = []
    for record in records:
        worker = record.worker
        state = worker.state
        running = state is WorkerState.RUNNING and record.running_since is not None
        restart_at = record.restart_at
        entries.append(
            {
                "name": worker.name,
                "kind": worker.kind,
                "state": state.value,
                "pid": worker.pid,
                "restart": record.restart,
                "restarts": record.restarts,
                "restart_reasons": dict(record.reasons),
                "restart_in": None if restart_at is None else round(max(0.0, restart_at - now), 3),
                "held": record.held,
                "last_error": record.last_error,
                "uptime": round(now - record.running_since, 3)
                if running and record.running_since is not None
                else None,
                "last_heartbeat": round(worker.supervision.silent_for(now), 3) if running else None,
                "rss_bytes": worker.supervision.rss_bytes(),
                "jobs_done": worker.supervision.jobs_done(),
                "exitcode": worker.exitcode,
            }
        )
    return entries


def liveness(supervisor: Supervisor, *, running: bool, stopping: bool, timeout: float) -> dict[str, Any]:
    """Whether ``supervisor`` is alive and answers a ping within ``timeout`` seconds.

    See :meth:`Server.liveness <spoc.workers.Server.liveness>`; ``running``
    and ``stopping`` say whether the server was started, and is stopping.
    """
    if supervisor.active and supervisor.failed is None:
        answered = supervisor.ping(timeout)
        if answered is not None:
            return {"alive": True, "detail": "the supervisor answered", "answered_in": round(answered, 6)}
        if supervisor.active and supervisor.failed is None:
            return {"alive": False, "detail": f"the supervisor did not answer within {timeout:g}s"}
    if supervisor.failed is not None:  # (it may also have left meanwhile: then see below)
        return {"alive": False, "detail": f"the supervisor thread failed: {supervisor.failed!r}"}
    if stopping:
        return {"alive": True, "detail": "stopping"}
    if not running:
        return {"alive": True, "detail": "not started"}
    return {"alive": True, "detail": "nothing to supervise: every worker has ended for good"}


def readiness(status: Callable[[], list[dict[str, Any]]], *, running: bool, stopping: bool) -> dict[str, Any]:
    """Whether every worker that should run is RUNNING, from the server's ``status()``.

    See :meth:`Server.readiness <spoc.workers.Server.readiness>`; ``status``
    is asked only of a server that was started and is not stopping.
    """
    if not running or stopping:
        return {"ready": False, "reason": "stopping" if stopping else "not started", "not_running": []}
    missing = [
        {"name": entry["name"], "state": entry["state"], "restart_in": entry["restart_in"]}
        for entry in status()
        if entry["state"] != WorkerState.RUNNING.value
        and not entry["held"]
        and not (entry["state"] == WorkerState.STOPPED.value and entry["restart_in"] is None)
    ]
    return {"ready": not missing, "not_running": missing}


def status_report(server: str, entries: list[dict[str, Any]]) -> str:
    """The status entries and every thread's stack, as one text for the log (SIGUSR1)."""
    lines = [f"server {server!r} status:"]
    lines += [f"  {entry}" for entry in entries]
    lines.append(all_stacks().rstrip())
    return "\n".join(lines)
