"""Find which attribute of a worker cannot be pickled, to say so at ``start()``."""

from __future__ import annotations

from collections.abc import Iterator
from multiprocessing.reduction import ForkingPickler
from typing import Any

__all__ = ["find_unpicklable"]

_MAX_DEPTH = 8


def find_unpicklable(obj: Any) -> tuple[str, BaseException] | None:
    """Return ``(dotted_path, error)`` of the deepest attribute that fails to pickle.

    The path is relative to ``obj`` (``""`` for ``obj`` itself); None when
    everything pickles. Objects that multiprocessing only lets travel while a
    child is being spawned (queues, locks of a context) count as picklable.
    """
    return _search(obj, "", 0, set())


def _search(obj: Any, path: str, depth: int, seen: set[int]) -> tuple[str, BaseException] | None:
    error = _pickle_error(obj)
    if error is None:
        return None
    if depth < _MAX_DEPTH and id(obj) not in seen:
        seen.add(id(obj))
        for name, child in _children(obj):
            found = _search(child, f"{path}.{name}" if path else name, depth + 1, seen)
            if found is not None:
                return found
    return path, error


def _pickle_error(obj: Any) -> BaseException | None:
    try:
        ForkingPickler.dumps(obj)
    except RuntimeError as exc:
        if "inheritance" in str(exc):  # multiprocessing objects: fine while spawning
            return None
        return exc
    except Exception as exc:
        return exc
    return None


def _children(obj: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield (key if isinstance(key, str) else repr(key)), value
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for index, value in enumerate(obj):
            yield f"[{index}]", value
    else:
        getstate = getattr(obj, "__getstate__", None)
        state: Any = None
        try:
            state = getstate() if callable(getstate) else None
        except Exception:
            state = None
        if isinstance(state, dict):
            yield from state.items()
        elif hasattr(obj, "__dict__"):
            yield from vars(obj).items()
