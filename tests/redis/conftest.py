"""A real ``redis-server`` for the Redis tests, on a free loopback port.

It runs daemonized (not a child of pytest, so the leak check ignores it) and
is shut down when the session ends. Without ``redis-server`` the tests skip,
saying why, except when ``SPOC_WORKERS_REQUIRE_REDIS=1`` (CI sets it): then
they fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REQUIRED = os.environ.get("SPOC_WORKERS_REQUIRE_REDIS") == "1"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a fresh redis-server that lives for the whole session."""
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not installed (Debian: apt-get install redis-server)"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    import redis

    workdir: Path = tmp_path_factory.mktemp("redis")
    port = _free_port()
    pidfile = workdir / "redis.pid"
    subprocess.run(
        [
            binary,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "yes",
            "--pidfile", str(pidfile),
            "--dir", str(workdir),
            "--logfile", str(workdir / "redis.log"),
        ],
        check=True,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, protocol=2)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    try:
        yield url
    finally:
        try:
            client.shutdown(nosave=True)
        except redis.ConnectionError:
            pass  # it closes the connection as it goes
        client.close()


@pytest.fixture
def stream_name() -> str:
    """A stream key of this test's own."""
    return f"jobs-{uuid.uuid4().hex[:12]}"
