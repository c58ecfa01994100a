"""Griffe extension used by the documentation build only: no private name in a shown value.

The packages keep some defaults in private module constants
(``stop_timeout: float = _DEFAULT_STOP_TIMEOUT``) and some public constants
are instances of private classes (``END_OF_STREAM = _EndOfStream()``). The
API pages would show those private names, which a reader can neither import
nor look up. So, once a package is loaded:

* a parameter default that is a module constant a reader cannot look up
  (a private one, or one of a private module that the package does not
  export, such as ``DEFAULT_SHUTDOWN_TIMEOUT``) is shown as that constant's
  value (``stop_timeout: float = 5.0``);
* an attribute whose value mentions a private name is shown without a value
  (its docstring says what it is).

A default that cannot be replaced this way is left as it is, and
``tests/support/check_api_pages.py`` (run by ``nox -s docs``) fails the build on it.
Private base classes are left out of "Bases:" by the class template in
``docs/_templates``, not here: griffe needs the real bases for inherited
members.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Attribute, Class, Extension, Function, Module, Object

_PRIVATE = re.compile(r"(?<![\w.])_[A-Za-z]\w*")
_NAME = re.compile(r"[A-Za-z_]\w*")


def _has_private_name(value: object) -> bool:
    return value is not None and bool(_PRIVATE.search(str(value)))


def _constant_value(scope: Object, name: str) -> str | None:
    """The value of the module constant ``name`` as source text, when it is free of private names."""
    member: Any = scope.module.members.get(name)
    if member is not None and member.is_alias:  # imported from a sibling module
        try:
            member = member.final_target
        except Exception:  # an alias griffe cannot resolve: leave the default alone
            return None
    if isinstance(member, Attribute) and member.value is not None and not _has_private_name(member.value):
        return str(member.value)
    return None


def _walk(obj: Object) -> list[Object]:
    found: list[Object] = []
    for member in obj.members.values():
        if member.is_alias or not isinstance(member, Object):
            continue
        found.append(member)
        if isinstance(member, (Class, Module)):
            found += _walk(member)
    return found


class PublicNamesOnly(Extension):
    """Replace private names in parameter defaults and attribute values (see the module docstring)."""

    def on_package(self, *, pkg: Module, **kwargs: Any) -> None:
        exported = set(pkg.exports or ())
        for obj in _walk(pkg):
            if isinstance(obj, Function):
                for parameter in obj.parameters:
                    name = str(parameter.default)
                    if parameter.default is None or not _NAME.fullmatch(name):
                        continue
                    hidden = name.startswith("_") or (_in_private_module(obj) and name not in exported)
                    value = _constant_value(obj, name) if hidden else None
                    if value is not None:
                        parameter.default = value
            elif isinstance(obj, Attribute) and _has_private_name(obj.value):
                obj.value = None


def _in_private_module(obj: Object) -> bool:
    return any(part.startswith("_") for part in obj.module.path.split("."))
