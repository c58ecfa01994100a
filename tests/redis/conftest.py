"""A real ``redis-server`` for the Redis tests, on a free loopback port.

One server (``local_redis_server``) lives for the whole session; a test that
stops and restarts Redis gets one of its own (``redis_server``). Without
``redis-server`` the tests skip, saying why, except when
``SPOC_WORKERS_REQUIRE_REDIS=1`` (``.ci/run`` sets it): then they fail.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator

import pytest

from spoc.workers.redis import LocalRedisServer, local_redis_server

REQUIRED = os.environ.get("SPOC_WORKERS_REQUIRE_REDIS") == "1"


def _need_redis_server() -> None:
    if shutil.which("redis-server") is None:
        message = "redis-server is not installed (Debian: apt-get install redis-server)"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of a fresh redis-server that lives for the whole session."""
    _need_redis_server()
    with local_redis_server() as url:
        yield url


@pytest.fixture
def redis_server() -> Iterator[LocalRedisServer]:
    """A redis-server of this test's own, which it may stop and start again (data kept)."""
    _need_redis_server()
    with LocalRedisServer() as server:
        yield server


@pytest.fixture
def stream_name() -> str:
    """A stream key of this test's own."""
    return f"jobs-{uuid.uuid4().hex[:12]}"
