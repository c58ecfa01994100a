"""Redis Streams for spoc-workers: share the jobs of many workers on many machines.

A :class:`RedisStream` is a job source for
:class:`~spoc.workers.patterns.JobProcessor` (and
:class:`~spoc.workers.patterns.ProcessJobProcessor`, and a stage's input) and a
sink for a stage's output. Delivery is at least once: a job is acknowledged
only after it was processed; the jobs of a worker that died are taken over by
live ones; a job that keeps failing ends in a dead-letter stream.
"""

from ._codec import Codec, JsonCodec, PickleCodec
from ._common import CONNECTION_ERRORS
from ._local_server import LocalRedisServer, local_redis_server
from ._reader import RedisStreamReader
from ._stream import DeadJob, RedisStream

__all__ = [
    "CONNECTION_ERRORS",
    "Codec",
    "DeadJob",
    "JsonCodec",
    "LocalRedisServer",
    "PickleCodec",
    "RedisStream",
    "RedisStreamReader",
    "local_redis_server",
]
