"""A real ``redis-server`` for the Redis tests, on a free loopback port.

One server (``local_redis_server``) lives for the whole session. Without
``redis-server`` the tests skip, saying why, except when
``SPOC_WORKERS_REQUIRE_REDIS=1`` (``.ci/run`` sets it): then they fail.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator

import pytest

from spoc.workers.redis import local_redis_server

REQUIRED = os.environ.get("SPOC_WORKERS_REQUIRE_REDIS") == "1"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of a fresh redis-server that lives for the whole session."""
    if shutil.which("redis-server") is None:
        message = "redis-server is not installed (Debian: apt-get install redis-server)"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    with local_redis_server() as url:
        yield url


@pytest.fixture
def stream_name() -> str:
    """A stream key of this test's own."""
    return f"jobs-{uuid.uuid4().hex[:12]}"
