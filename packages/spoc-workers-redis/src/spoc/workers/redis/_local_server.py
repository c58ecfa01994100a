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

__all__ = ["local_redis_server"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def local_redis_server(binary: str = "redis-server", *, timeout: float = 10.0) -> Iterator[str]:
    """Start a private, non-persistent ``redis-server`` and yield its URL; stop it on exit.

    It listens on 127.0.0.1 only, on a free port, keeps nothing on disk, and
    is a child of this process until the block ends. Not for production:
    for examples, tests and benchmarks.

    Examples:
        ```python
        with local_redis_server() as url:
            stream = RedisStream("jobs", url=url)
        ```

    Raises:
        FileNotFoundError: ``binary`` is not installed (Debian: ``apt-get install redis-server``).
        TimeoutError: the server did not answer within ``timeout`` seconds.
    """
    path = shutil.which(binary)
    if path is None:
        raise FileNotFoundError(f"{binary} is not installed (Debian: apt-get install redis-server)")
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="spoc-redis-") as workdir:
        args = [path, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        server = subprocess.Popen([*args, "--dir", workdir], stdout=subprocess.DEVNULL)
        url = f"redis://127.0.0.1:{port}/0"
        try:
            _wait_until_up(url, server, timeout)
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _wait_until_up(url: str, server: subprocess.Popen[bytes], timeout: float) -> None:
    client = redis.Redis.from_url(url, protocol=2, socket_connect_timeout=1)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if server.poll() is not None:
                    raise RuntimeError(f"redis-server exited with code {server.returncode}") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"redis-server at {url} did not answer within {timeout}s") from None
                time.sleep(0.01)
    finally:
        client.close()
