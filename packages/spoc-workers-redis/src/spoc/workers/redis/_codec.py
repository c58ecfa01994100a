"""How a job becomes the bytes of a stream entry, and back."""

from __future__ import annotations

import json
import pickle
from typing import Any, Protocol, runtime_checkable

__all__ = ["Codec", "JsonCodec", "PickleCodec", "codec_for"]


@runtime_checkable
class Codec(Protocol):
    """Turns a job into bytes and back: anything with ``dumps`` and ``loads``."""

    def dumps(self, job: Any) -> bytes:
        """Encode ``job``."""
        ...

    def loads(self, data: bytes) -> Any:
        """Decode what :meth:`dumps` made."""
        ...


class JsonCodec:
    """JSON (the default): readable by producers and consumers in any language."""

    def dumps(self, job: Any) -> bytes:
        """Encode ``job`` as compact UTF-8 JSON."""
        return json.dumps(job, separators=(",", ":")).encode()

    def loads(self, data: bytes) -> Any:
        """Decode JSON."""
        return json.loads(data)


class PickleCodec:
    """Pickle: any picklable Python object, for Python-only deployments you trust.

    Unpickling runs code chosen by whoever wrote the entry: use it only when
    every producer that can reach the Redis server is trusted.
    """

    def dumps(self, job: Any) -> bytes:
        """Pickle ``job`` (highest protocol)."""
        return pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)

    def loads(self, data: bytes) -> Any:
        """Unpickle."""
        return pickle.loads(data)


def codec_for(owner: str, codec: str | Codec) -> Codec:
    """``"json"``, ``"pickle"`` or a :class:`Codec` object.

    Raises:
        ValueError: an unknown codec name.
        TypeError: an object without ``dumps`` and ``loads``.
    """
    if codec == "json":
        return JsonCodec()
    if codec == "pickle":
        return PickleCodec()
    if isinstance(codec, str):
        raise ValueError(f"{owner}: codec must be 'json', 'pickle' or a Codec object, got {codec!r}")
    if not isinstance(codec, Codec):
        raise TypeError(f"{owner}: codec {codec!r} has no dumps() and loads()")
    return codec
