"""Old spellings kept for one release: one warning, worded the same everywhere.

Public to the sibling distributions (patterns, redis), which pin this one
exactly; not part of the user-facing API. The spellings are listed in the
naming table of the documentation (docs/naming.md).
"""

from __future__ import annotations

import warnings

__all__ = ["renamed"]


def renamed(old: str, new: str, *, stacklevel: int = 3) -> None:
    """Warn that ``old`` is the deprecated spelling of ``new``.

    Args:
        old: the old spelling, as the user wrote it (``"PeriodicStats.failures"``).
        new: the spelling to use instead.
        stacklevel: as for :func:`warnings.warn`; the default points at the
            caller of the function that calls this one.
    """
    warnings.warn(
        f"{old} is deprecated and will be removed in the next release; use {new}",
        DeprecationWarning,
        stacklevel=stacklevel,
    )
