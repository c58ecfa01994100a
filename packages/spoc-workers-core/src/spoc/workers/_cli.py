"""``spoc-workers run package.module:attribute``: run a Server from the command line.

The attribute may be a :class:`~spoc.workers.Server`, a worker (run in a
server of its own), or a callable returning either (a factory function, or a
worker class, called without arguments), as with ``gunicorn module:app``.
SIGINT and SIGTERM stop it gracefully (a second one cuts the shutdown short),
SIGUSR1 logs its status and every thread's stack, and the exit status is the
server's: 0 when every worker ended cleanly. Problems with the target exit
with status 2 and a one-line message; ``--traceback`` adds the traceback.
``--http ADDRESS`` serves the server's HTTP endpoint (probes, metrics, a
status page; ``--http-token`` enables its remote control), and
``--log-format json`` logs one JSON object per line. The command is
documented on the Supervision page of the documentation, its operating
options on the "Operating spoc-workers" page.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import logging
import multiprocessing
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._errors import HttpBindError
from ._jsonlog import JsonFormatter
from ._pickling import find_unpicklable
from ._process import START_METHOD_ENV, ProcessWorker
from ._server import HTTP_ENV, HTTP_TOKEN_ENV, Server
from ._worker import AbstractWorker

__all__ = ["TargetError", "load_server", "main"]

EXIT_USAGE = 2
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class TargetError(Exception):
    """The target named on the command line cannot be run."""


def load_server(target: str) -> Server:
    """Import ``package.module:attribute`` and make a Server of it.

    The attribute may be a dotted path inside the module. It may be a
    Server, a worker (put in a server of its own, named after it), or a
    callable returning either: a factory function, or a worker class, which
    is called without arguments. The current directory is put on
    ``sys.path`` first, as ``python -m`` does.

    Raises:
        TargetError: a malformed target (a file path instead of a module
            name included), an import error, a missing attribute, a callable
            that fails, or an object that is neither a Server, a worker, nor
            a callable returning one. The error's ``__cause__`` is the
            exception behind it, if any.
    """
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise TargetError(f"target {target!r} must look like package.module:attribute")
    if "/" in module_name or os.sep in module_name:
        raise TargetError(_path_hint(target, module_name, attribute))
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: modules of the current directory
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if module_name.endswith(".py") and exc.name in (module_name, module_name[: -len(".py")]):
            raise TargetError(_path_hint(target, module_name, attribute)) from None
        if exc.name and module_name.startswith(exc.name):
            raise TargetError(f"cannot import {module_name!r}: no module named {exc.name!r}") from exc
        raise TargetError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        raise TargetError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise TargetError(f"{module_name!r} has no attribute {attribute!r}") from None
    if callable(obj) and not isinstance(obj, (Server, AbstractWorker)):  # a factory, or a worker class
        try:
            obj = obj()
        except Exception as exc:
            how = "a worker class is called without arguments: " if _is_worker_class(obj) else ""
            raise TargetError(f"calling {target!r} failed ({how}{type(exc).__name__}: {exc})") from exc
    if isinstance(obj, AbstractWorker):
        server = Server(obj.name)
        server.add_worker(obj)
        return server
    if isinstance(obj, Server):
        return obj
    raise TargetError(
        f"{target!r} is {_a(type(obj).__name__)}, not a Server, a worker, or a callable returning one"
    )


def _is_worker_class(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, AbstractWorker)


def _a(name: str) -> str:
    """``name`` with its indefinite article: ``"an int"``, ``"a str"``."""
    return f"an {name}" if name[:1].lower() in "aeio" else f"a {name}"


def _path_hint(target: str, module_name: str, attribute: str) -> str:
    """The error for a target written as a file path: name the module with dots instead."""
    dotted = _dotted_module(module_name)
    if dotted is None:
        return (
            f"target {target!r} names a file; name its module with dots (package.module:attribute), "
            "from the directory that holds its top package or with that directory on PYTHONPATH"
        )
    return f"target {target!r} names a file; name its module with dots: {dotted}:{attribute}"


def _dotted_module(module_name: str) -> str | None:
    """``examples/supervised.py`` -> ``examples.supervised`` (relative to the current directory)."""
    path = Path(module_name)
    if path.suffix == ".py":
        path = path.with_suffix("")
    if path.is_absolute():
        try:
            path = path.relative_to(Path.cwd())
        except ValueError:
            return None
    parts = ".".join(part for part in path.parts if part != ".").split(".")
    if parts[-1] == "__init__":
        parts.pop()
    if not parts or not all(part.isidentifier() for part in parts):
        return None
    return ".".join(parts)


def check_server(server: Server) -> None:
    """Find what would fail at start: process workers that cannot travel to their child.

    Raises:
        TargetError: naming the worker and the attribute.
    """
    if not server.workers:
        raise TargetError(f"server {server.name!r} has no workers")
    for worker in server.workers:
        if isinstance(worker, ProcessWorker) and worker.start_method != "fork":
            found = find_unpicklable(worker)
            if found is not None:
                path, error = found
                raise TargetError(
                    f"process worker {worker.name!r} cannot be sent to its child process "
                    f"(start method {worker.start_method!r}): "
                    f"{f'attribute {path!r}' if path else 'the worker'} cannot be pickled ({error}); "
                    "create it in setup()"
                )


def _version() -> str:
    try:
        return importlib.metadata.version("spoc-workers-core")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return "unknown (spoc-workers-core is not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spoc-workers", description="Run spoc-workers servers.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="run a Server until SIGINT or SIGTERM",
        description="Run a Server (or a worker, or a callable returning one) until SIGINT or SIGTERM. "
        "SIGUSR1 logs its status and every thread's stack.",
    )
    run.add_argument(
        "target",
        help="package.module:attribute: a Server, a worker, or a callable returning one "
        "(a factory function or a worker class, called without arguments)",
    )
    run.add_argument("--log-level", default="info", choices=LOG_LEVELS, help="default: info")
    run.add_argument(
        "--log-format",
        default="text",
        choices=LOG_FORMATS,
        help="text (default) or json: one JSON object per line, with the framework's fields "
        "(spoc_server, spoc_worker, spoc_state...)",
    )
    for flag, metavar, env, what in (
        (
            "--http",
            "ADDRESS",
            HTTP_ENV,
            "serve health and readiness probes, status, Prometheus metrics and a status page on "
            "HOST:PORT (e.g. 127.0.0.1:9000; a bare port binds to loopback; default: ${env}); "
            "needs the http extra (prometheus_client)",
        ),
        (
            "--http-token",
            "TOKEN",
            HTTP_TOKEN_ENV,
            "enable remote control (POST /workers/NAME/restart and /stop) with this Bearer token "
            "(default: ${env}, which keeps it out of the process list)",
        ),
    ):  # defaults from the environment
        run.add_argument(
            flag, metavar=metavar, default=os.environ.get(env) or None, help=what.format(env=env)
        )
    run.add_argument("--shutdown-timeout", type=float, metavar="SECONDS", help="override the server's")
    run.add_argument(
        "--start-method",
        choices=multiprocessing.get_all_start_methods(),
        help=f"for process workers without their own (sets ${START_METHOD_ENV})",
    )
    run.add_argument(
        "--check",
        action="store_true",
        help="import the module, make the server (calling the attribute if it is callable) and "
        "validate it, then exit without starting anything",
    )
    run.add_argument(
        "--traceback", action="store_true", help="when the target cannot be run, show the full traceback"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The ``spoc-workers`` console script.

    Args:
        argv: the arguments, without the program name (default: ``sys.argv[1:]``).

    Returns:
        the exit status: the server's (0 when every worker ended cleanly), or
        2 when the target cannot be run.
    """
    args = _parser().parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if args.log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])
    debug = args.log_level == "debug"
    if args.start_method:
        os.environ[START_METHOD_ENV] = args.start_method
    try:
        server = load_server(args.target)
        if args.shutdown_timeout is not None:
            if not args.shutdown_timeout >= 0:
                raise TargetError("--shutdown-timeout must be >= 0")
            server.shutdown_timeout = args.shutdown_timeout
        if args.http_token is not None and args.http is None:
            raise TargetError(f"--http-token (or ${HTTP_TOKEN_ENV}) needs --http (or ${HTTP_ENV})")
        if args.http is not None:
            try:
                server.set_http(args.http, token=args.http_token)
            except (ValueError, TypeError, ImportError) as exc:
                raise TargetError(str(exc)) from None
        check_server(server)
    except TargetError as exc:
        message = str(exc)
        if args.traceback:
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        elif debug:
            logging.getLogger("spoc.workers.cli").exception("cannot run %s", args.target)
        elif exc.__cause__ is not None:
            message += " (add --traceback to see the full traceback)"
        print(f"spoc-workers: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    if args.check:
        names = ", ".join(f"{w.name} ({w.kind})" for w in server.workers)
        print(f"ok: server {server.name!r} with {len(server.workers)} worker(s): {names}")
        return 0
    try:
        return server.run_forever()
    except HttpBindError as exc:  # nothing was started
        print(f"spoc-workers: error: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
