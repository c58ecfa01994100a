"""spoc-workers: background workers in threads and processes with one lifecycle.

The public API, importable from ``spoc.workers``:

* :class:`ThreadWorker`, :class:`ProcessWorker` and their base :class:`AbstractWorker`;
* :class:`Server`, which runs many workers and handles SIGINT/SIGTERM, and
  :class:`Recycle`, its limits for replacing a worker's run with a fresh one;
* :func:`run_async_safely` and :func:`set_uvloop_if_available` (from ``spoc.workers.aio``).
"""

# spoc.workers spans several distributions (core, aio, patterns); with
# editable installs each has its own src/ on sys.path, so extend the path.
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

from spoc.workers.aio import run_async_safely, set_uvloop_if_available

from ._backoff import Backoff
from ._errors import (
    HttpBindError,
    RemoteTraceback,
    WorkerError,
    WorkerExitedError,
    WorkerHungError,
    WorkerNotPicklableError,
    WorkerRemoteError,
)
from ._events import RestartPolicy, RestartReason, Strategy, WorkerEvent
from ._process import START_METHOD_ENV, ProcessWorker
from ._recycle import Recycle
from ._server import Server
from ._state import WorkerState
from ._thread import ThreadWorker
from ._worker import AbstractWorker, WorkerContext

__version__: str
try:
    from importlib.metadata import version as _version

    __version__ = _version("spoc-workers-core")
except Exception:  # running from a source tree without metadata
    __version__ = "0+unknown"

__all__ = [
    "START_METHOD_ENV",
    "AbstractWorker",
    "Backoff",
    "HttpBindError",
    "ProcessWorker",
    "Recycle",
    "RemoteTraceback",
    "RestartPolicy",
    "RestartReason",
    "Server",
    "Strategy",
    "ThreadWorker",
    "WorkerContext",
    "WorkerError",
    "WorkerEvent",
    "WorkerExitedError",
    "WorkerHungError",
    "WorkerNotPicklableError",
    "WorkerRemoteError",
    "WorkerState",
    "__version__",
    "run_async_safely",
    "set_uvloop_if_available",
]
