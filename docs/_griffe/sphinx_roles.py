"""Griffe extension used by the documentation build only.

The docstrings of spoc-workers cross-reference with Sphinx roles
(:class:`ThreadWorker`, :meth:`~spoc.workers.AbstractWorker.stop`) and end a
paragraph with ``::`` before a literal block, as reStructuredText does. The
site renders docstrings as Markdown, where both would show up literally, so
this turns each role into inline code (with Sphinx's ``~`` meaning "show the
last name only") and ``::`` into ``:``. Nothing else is changed.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension, Object

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|exc|data|obj|const):`(~?)([^`]+)`")
_LITERAL_MARKER = re.compile(r"(?<=\S)::$", re.MULTILINE)


def _role_to_code(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    shown = target.rsplit(".", 1)[-1] if tilde else target
    return f"`{shown}`"


class SphinxRolesToMarkdown(Extension):
    """Rewrite Sphinx roles and ``::`` markers in every docstring before it is parsed."""

    def on_instance(self, *, obj: Object, **kwargs: Any) -> None:
        docstring = obj.docstring
        if docstring is None:
            return
        text = _ROLE.sub(_role_to_code, docstring.value)
        docstring.value = _LITERAL_MARKER.sub(":", text)
