"""A throwaway ``redis-server`` on a free loopback port, for demos, tests and benchmarks."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import redis

__all__ = ["LocalRedisServer", "local_redis_server"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LocalRedisServer:
    """A private ``redis-server`` on a free loopback port that can be stopped and started again.

    :meth:`stop` saves the data set to a private temporary directory and ends
    the server; :meth:`start` starts it again on the same port from that
    data: streams, consumer groups and pending entries survive, as across a
    real server restart. Between the two, clients get connection errors: an
    outage, for tests of what workers do meanwhile. :meth:`close` ends it for
    good and removes the directory. Not for production: for tests, demos and
    benchmarks; while it is stopped, another program may take its port.

    Examples:
        ```python
        with LocalRedisServer() as server:
            stream = RedisStream("jobs", url=server.url)
            server.stop()  # Redis is down
            server.start()  # and back, with its data
        ```

    Args:
        binary: the ``redis-server`` executable (looked up on ``PATH``).
        timeout: seconds for the server to answer after a start, or to exit after a stop.

    Raises:
        FileNotFoundError: ``binary`` is not installed (Debian: ``apt-get install redis-server``).
    """

    def __init__(self, binary: str = "redis-server", *, timeout: float = 10.0) -> None:
        path = shutil.which(binary)
        if path is None:
            raise FileNotFoundError(f"{binary} is not installed (Debian: apt-get install redis-server)")
        self._path = path
        self.timeout = timeout
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._server: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"LocalRedisServer({self.url!r}, running={self.running})"

    @property
    def running(self) -> bool:
        """Whether the server process is up (started and not stopped)."""
        return self._server is not None and self._server.poll() is None

    def start(self) -> None:
        """Start the server (again, from the data the last :meth:`stop` saved) and wait until it answers.

        Raises:
            RuntimeError: it is already running, or it exited at once.
            TimeoutError: it did not answer within ``timeout`` seconds.
        """
        if self.running:
            raise RuntimeError(f"{self!r}: already running")
        if self._workdir is None:
            self._workdir = tempfile.TemporaryDirectory(prefix="spoc-redis-")
        args = [
            self._path,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        self._server = subprocess.Popen([*args, "--dir", self._workdir.name], stdout=subprocess.DEVNULL)
        try:
            _wait_until_up(self.url, self._server, self.timeout)
        except BaseException:
            self._end(self._server)
            raise

    def stop(self) -> None:
        """Save the data set and end the server (``SHUTDOWN SAVE``); :meth:`start` brings it back."""
        server = self._server
        if server is None or server.poll() is not None:
            return
        client = redis.Redis.from_url(self.url, protocol=2, socket_timeout=self.timeout)
        try:
            client.shutdown(save=True)
        except redis.ConnectionError:
            pass  # the server closed the connection on its way out
        finally:
            client.close()
        self._end(server)

    def close(self) -> None:
        """End the server without saving and remove its data; idempotent."""
        if self._server is not None:
            self._end(self._server)
            self._server = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> LocalRedisServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _end(self, server: subprocess.Popen[bytes]) -> None:
        if server.poll() is None:
            server.terminate()
        try:
            server.wait(self.timeout)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@contextlib.contextmanager
def local_redis_server(binary: str = "redis-server", *, timeout: float = 10.0) -> Iterator[str]:
    """Start a private, non-persistent ``redis-server`` and yield its URL; stop it on exit.

    It listens on 127.0.0.1 only, on a free port, keeps nothing on disk, and
    is a child of this process until the block ends. Not for production:
    for examples, tests and benchmarks. To stop and restart the server
    meanwhile, use :class:`LocalRedisServer`.

    Examples:
        ```python
        with local_redis_server() as url:
            stream = RedisStream("jobs", url=url)
        ```

    Raises:
        FileNotFoundError: ``binary`` is not installed (Debian: ``apt-get install redis-server``).
        TimeoutError: the server did not answer within ``timeout`` seconds.
    """
    with LocalRedisServer(binary, timeout=timeout) as server:
        yield server.url


def _wait_until_up(url: str, server: subprocess.Popen[bytes], timeout: float) -> None:
    client = redis.Redis.from_url(url, protocol=2, socket_connect_timeout=1)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:  # BusyLoadingError too: still loading its data
                if server.poll() is not None:
                    raise RuntimeError(f"redis-server exited with code {server.returncode}") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"redis-server at {url} did not answer within {timeout}s") from None
                time.sleep(0.01)
    finally:
        client.close()
