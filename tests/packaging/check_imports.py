"""Check what one installed subset of the spoc-workers distributions can import.

Run by ``check_build.py`` with the Python of a fresh virtual environment::

    python -I tests/packaging/check_imports.py {async,core,all,redis} --version 0.1.0 --mode installed

There are four distributions, each requiring the one before it: ``async`` means
spoc-workers-async alone (``spoc.workers.aio``), ``core`` adds spoc-workers-core
(``spoc.workers``), ``all`` adds spoc-workers-patterns (``spoc.workers.patterns``)
and ``redis`` adds spoc-workers-redis (``spoc.workers.redis``, with the ``redis``
client from PyPI): it is the subset of all four. ``--mode installed`` expects the
code in the environment's site-packages, ``--mode editable`` in the checkout's
``packages/*/src``. Every check is printed; the exit status is 1 if any failed.

It uses the standard library only, so that it runs in an environment holding
nothing but the distributions under test (and, for ``redis``, their dependencies).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.metadata
import importlib.util
import pickle
import socket
import sys
import sysconfig
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
DISTRIBUTIONS = ["spoc-workers-async", "spoc-workers-core", "spoc-workers-patterns", "spoc-workers-redis"]
SUBSETS = {"async": 1, "core": 2, "all": 3, "redis": 4}
"""How many of DISTRIBUTIONS (in dependency order) each subset installs."""
SOURCE_DIRS = {name: ROOT / "packages" / name / "src" for name in DISTRIBUTIONS}
AIO_NAMES = ["run_async_safely", "set_uvloop_if_available", "LoopRunner"]
CORE_NAMES = [
    "AbstractWorker",
    "ThreadWorker",
    "ProcessWorker",
    "Server",
    "run_async_safely",
    "set_uvloop_if_available",
]
REDIS_NAMES = [
    "RedisStream",
    "RedisStreamReader",
    "DeadJob",
    "Codec",
    "JsonCodec",
    "PickleCodec",
    "CONNECTION_ERRORS",
    "local_redis_server",
    "LocalRedisServer",
]


class CheckError(Exception):
    """One check's condition did not hold."""


def expect(condition: bool, message: str) -> None:
    """Raise :class:`CheckError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise CheckError(message)


class Checker:
    """Runs named checks, prints each outcome and remembers the failures."""

    def __init__(self) -> None:
        """Start with no failures."""
        self.failures: list[str] = []

    def check(self, title: str, func: Callable[[], None]) -> bool:
        """Run ``func``; print ``ok`` or ``FAIL`` with the reason; return whether it passed."""
        try:
            func()
        except CheckError as exc:
            reason = str(exc)
        except Exception:  # an unexpected error is a failure too, with its traceback
            reason = traceback.format_exc().rstrip()
        else:
            print(f"  ok    {title}")
            return True
        print(f"  FAIL  {title}\n        " + reason.replace("\n", "\n        "))
        self.failures.append(title)
        return False


def module_file(module: ModuleType) -> Path:
    """The resolved path of a regular module's file."""
    file = getattr(module, "__file__", None)
    expect(file is not None, f"{module.__name__} has no __file__ (it is a namespace package)")
    return Path(str(file)).resolve()


def expect_location(module: ModuleType, distribution: str, mode: str) -> None:
    """Check that ``module`` comes from where ``mode`` says ``distribution`` is installed."""
    path = module_file(module)
    if mode == "editable":
        where = SOURCE_DIRS[distribution].resolve()
    else:
        where = Path(sysconfig.get_paths()["purelib"]).resolve()
    expect(path.is_relative_to(where), f"{module.__name__} was imported from {path}, expected under {where}")


def check_namespace(mode: str) -> None:
    """``spoc`` must be a PEP 420 namespace package: no ``__file__``, no ``__init__.py`` anywhere."""
    import spoc

    expect(getattr(spoc, "__file__", None) is None, f"spoc is a regular package: {spoc.__file__}")
    spec = spoc.__spec__
    expect(spec is not None and spec.origin in (None, "namespace"), f"spoc's spec: {spec!r}")
    paths = [Path(p) for p in spoc.__path__]
    expect(bool(paths), "spoc has an empty __path__")
    inits = [str(p / "__init__.py") for p in paths if (p / "__init__.py").exists()]
    expect(not inits, f"spoc/__init__.py exists: {inits}")
    if mode == "installed":
        purelib = Path(sysconfig.get_paths()["purelib"]).resolve()
        expect(
            all(p.resolve().is_relative_to(purelib) for p in paths),
            f"spoc.__path__ {paths} reaches outside {purelib} (the checkout leaked in?)",
        )


def check_all_locations(mode: str) -> None:
    """Every ``spoc.*`` module imported so far lives where ``mode`` says the code is installed."""
    if mode == "editable":
        roots = [path.resolve() for path in SOURCE_DIRS.values()]
    else:
        roots = [Path(sysconfig.get_paths()["purelib"]).resolve()]
    stray = []
    for name, module in sorted(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if (name == "spoc" or name.startswith("spoc.")) and file is not None:
            path = Path(file).resolve()
            if not any(path.is_relative_to(root) for root in roots):
                stray.append(f"{name} from {path}")
    more = f" and {len(stray) - 5} more" if len(stray) > 5 else ""
    expect(not stray, f"modules from elsewhere than {[str(r) for r in roots]}: {stray[:5]}{more}")


def check_metadata(installed: list[str], version: str | None) -> None:
    """Exactly the distributions of the subset are installed, each at ``version``."""
    for name in DISTRIBUTIONS:
        try:
            found = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            expect(name not in installed, f"{name} is not installed")
            continue
        expect(name in installed, f"{name} {found} is installed but should not be")
        expect(version is None or found == version, f"{name} is version {found}, expected {version}")


def check_aio(mode: str) -> None:
    """``spoc.workers.aio`` imports and exposes the async helpers."""
    aio = importlib.import_module("spoc.workers.aio")
    missing = [name for name in AIO_NAMES if not hasattr(aio, name)]
    expect(not missing, f"spoc.workers.aio lacks {missing}")
    expect(isinstance(aio.LoopRunner, type), "spoc.workers.aio.LoopRunner is not a class")
    expect_location(aio, "spoc-workers-async", mode)


def check_no_core() -> None:
    """Without core, ``spoc.workers`` is a bare namespace and has no ThreadWorker."""
    import spoc.workers

    expect(
        getattr(spoc.workers, "__file__", None) is None,
        f"spoc.workers is a regular package from {spoc.workers.__file__}: only core may ship its __init__.py",
    )
    try:
        from spoc.workers import ThreadWorker  # noqa: F401
    except ImportError:
        return
    raise CheckError("`from spoc.workers import ThreadWorker` worked without spoc-workers-core")


def check_core_api(mode: str) -> None:
    """The public API of core imports from ``spoc.workers``; its async helpers are aio's."""
    workers = importlib.import_module("spoc.workers")
    missing = [name for name in CORE_NAMES if not hasattr(workers, name)]
    expect(not missing, f"spoc.workers lacks {missing}")
    from spoc.workers import (  # noqa: F401
        AbstractWorker,
        ProcessWorker,
        Server,
        ThreadWorker,
        run_async_safely,
        set_uvloop_if_available,
    )
    from spoc.workers.aio import run_async_safely as aio_run

    expect(run_async_safely is aio_run, "spoc.workers.run_async_safely is not spoc.workers.aio's")
    expect(issubclass(ThreadWorker, AbstractWorker), "ThreadWorker is not an AbstractWorker")
    expect(issubclass(ProcessWorker, AbstractWorker), "ProcessWorker is not an AbstractWorker")
    expect(module_file(workers).name == "__init__.py", f"spoc.workers.__file__ is {workers.__file__}")
    expect_location(workers, "spoc-workers-core", mode)


def check_core_version(version: str | None) -> None:
    """``spoc.workers.__version__`` is the installed version."""
    import spoc.workers

    found = getattr(spoc.workers, "__version__", None)
    expect(version is None or found == version, f"spoc.workers.__version__ is {found!r}, expected {version}")


def check_no_patterns() -> None:
    """Without spoc-workers-patterns, ``spoc.workers.patterns`` is not importable."""
    try:
        importlib.import_module("spoc.workers.patterns")
    except ModuleNotFoundError as exc:
        expect(exc.name == "spoc.workers.patterns", f"unexpected ModuleNotFoundError: {exc}")
        return
    raise CheckError("spoc.workers.patterns imported without spoc-workers-patterns")


def check_patterns(mode: str) -> None:
    """``spoc.workers.patterns`` imports from spoc-workers-patterns."""
    patterns = importlib.import_module("spoc.workers.patterns")
    expect_location(patterns, "spoc-workers-patterns", mode)


def check_no_redis() -> None:
    """Without spoc-workers-redis, ``spoc.workers.redis`` is not importable."""
    try:
        importlib.import_module("spoc.workers.redis")
    except ModuleNotFoundError as exc:
        expect(exc.name == "spoc.workers.redis", f"unexpected ModuleNotFoundError: {exc}")
        return
    raise CheckError("spoc.workers.redis imported without spoc-workers-redis")


def check_redis(mode: str) -> None:
    """``spoc.workers.redis`` imports from spoc-workers-redis and exposes its API."""
    module = importlib.import_module("spoc.workers.redis")
    missing = [name for name in REDIS_NAMES if not hasattr(module, name)]
    expect(not missing, f"spoc.workers.redis lacks {missing}")
    from spoc.workers.redis import RedisStream

    expect(isinstance(RedisStream, type), "spoc.workers.redis.RedisStream is not a class")
    expect_location(module, "spoc-workers-redis", mode)


def smoke_redis_stream() -> None:
    """``RedisStream("s")`` is made without a connection, and survives a pickle round trip."""
    from spoc.workers.redis import RedisStream

    attempts: list[object] = []
    real_connect, real_create = socket.socket.connect, socket.create_connection

    def connect(sock: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError(f"check_imports: no connection allowed (to {address!r})")

    def create_connection(address: object, *args: object, **kwargs: object) -> socket.socket:
        attempts.append(address)
        raise OSError(f"check_imports: no connection allowed (to {address!r})")

    socket.socket.connect = connect  # type: ignore[method-assign, assignment]
    socket.create_connection = create_connection  # type: ignore[assignment]
    try:
        stream = RedisStream("s")
        clone = pickle.loads(pickle.dumps(stream))
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]
        socket.create_connection = real_create
    expect(not attempts, f"RedisStream('s') or its pickling tried to connect to {attempts}")
    expect(type(clone) is RedisStream, f"unpickled a {type(clone).__name__}, expected a RedisStream")
    expect(clone is not stream, "pickle returned the same object")
    for name in ("stream", "url", "group", "dead_letter_stream", "block", "batch", "max_deliveries"):
        mine, theirs = getattr(stream, name), getattr(clone, name)
        expect(mine == theirs, f"after unpickling, {name} is {theirs!r}, expected {mine!r}")
    expect(clone.stream == "s", f"the stream's name is {clone.stream!r}, expected 's'")
    codec, expected = type(clone.codec), type(stream.codec)
    expect(codec is expected, f"unpickled, the codec is a {codec.__name__}, expected {expected.__name__}")


def smoke_run_async_safely() -> None:
    """``run_async_safely`` returns a coroutine's result, and gives a Task inside a running loop."""
    from spoc.workers.aio import run_async_safely

    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    result = run_async_safely(answer())
    expect(result == 42, f"run_async_safely(answer()) returned {result!r}, expected 42")

    async def inside_loop() -> int:
        task = run_async_safely(answer())
        if not isinstance(task, asyncio.Task):
            raise CheckError(f"inside a loop it returned {task!r}, expected a Task")
        return await task

    result = asyncio.run(inside_loop())
    expect(result == 42, f"the task from inside a loop gave {result!r}, expected 42")


def smoke_thread_worker() -> None:
    """A ThreadWorker subclass runs its main in another thread and ends ``stopped``."""
    from spoc.workers import ThreadWorker

    ran_in: list[threading.Thread] = []

    class FlagWorker(ThreadWorker):
        """Records the thread its main runs in, then returns."""

        def main(self) -> None:
            """Set the flag."""
            ran_in.append(threading.current_thread())

    worker = FlagWorker()
    worker.start()
    joined = worker.join(5)
    expect(bool(ran_in), f"main() never ran (join returned {joined!r}, state {worker.state!r})")
    expect(ran_in[0] is not threading.main_thread(), "main() ran in the main thread")
    expect(worker.state == "stopped", f"state after join(5) is {worker.state!r}, expected 'stopped'")
    expect(not worker.is_alive(), "the worker is still alive after join(5)")


def check_http_extra_missing() -> None:
    """Without prometheus_client (the http extra), ``Server(http=...)`` fails at once, naming the extra."""
    from spoc.workers import Server

    try:
        Server("probe", http="127.0.0.1:0")
    except ImportError as exc:
        expect("spoc-workers-core[http]" in str(exc), f"the error does not name the extra: {exc}")
        expect("\n" not in str(exc), f"the error is not one line: {exc!r}")
        return
    raise CheckError("Server(http=...) worked without prometheus_client")


def run_checks(subset: str, version: str | None, mode: str) -> list[str]:
    """Run every check that applies to ``subset``; return the titles of the failed ones."""
    installed = DISTRIBUTIONS[: SUBSETS[subset]]
    checker = Checker()
    check = checker.check
    check(f"installed distributions are exactly {installed}", lambda: check_metadata(installed, version))
    check("spoc is a PEP 420 namespace package", lambda: check_namespace(mode))
    if check(f"import spoc.workers.aio exposes {', '.join(AIO_NAMES)}", lambda: check_aio(mode)):
        check("smoke: run_async_safely of a coroutine returning 42", smoke_run_async_safely)
    if subset == "async":
        check("spoc.workers is a namespace; `from spoc.workers import ThreadWorker` fails", check_no_core)
    elif check(f"from spoc.workers import {', '.join(CORE_NAMES)}", lambda: check_core_api(mode)):
        check("spoc.workers.__version__ matches", lambda: check_core_version(version))
        check("smoke: a ThreadWorker runs main and stops", smoke_thread_worker)
        if importlib.util.find_spec("prometheus_client") is None:
            check("without the http extra, Server(http=...) names it", check_http_extra_missing)
    if subset == "core":
        check("spoc.workers.patterns is not importable", check_no_patterns)
    if subset in ("all", "redis"):
        check("import spoc.workers.patterns", lambda: check_patterns(mode))
    if subset == "all":
        check("spoc.workers.redis is not importable", check_no_redis)
    if subset == "redis" and check(
        f"from spoc.workers.redis import {', '.join(REDIS_NAMES)}", lambda: check_redis(mode)
    ):
        check("smoke: RedisStream('s') is made without connecting, and pickles", smoke_redis_stream)
    # Last, so that it sees every module the checks above imported.
    check("every spoc module loaded comes from the expected place", lambda: check_all_locations(mode))
    return checker.failures


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run the checks, return the exit status."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("subset", choices=list(SUBSETS), help="which distributions are installed")
    parser.add_argument("--version", help="the version every installed distribution must have")
    parser.add_argument("--mode", choices=["installed", "editable"], default="installed")
    args = parser.parse_args(argv)
    print(f"check_imports: subset {args.subset!r} ({args.mode}) with Python {sys.version.split()[0]}")
    failures = run_checks(args.subset, args.version, args.mode)
    if failures:
        print(f"check_imports: {len(failures)} check(s) failed: {'; '.join(failures)}")
        return 1
    print(f"check_imports: subset {args.subset!r} passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
