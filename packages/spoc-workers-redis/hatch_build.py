"""Pin sibling spoc-workers distributions to this distribution's exact version.

Each package keeps its own copy: a hook shared from outside the package
directory breaks building a wheel from the sdist.
"""

from __future__ import annotations

from typing import Any

from hatchling.metadata.plugin.interface import MetadataHookInterface


class SiblingPinHook(MetadataHookInterface):
    """Turn ``sibling-dependencies`` into ``name==<version>`` requirements."""

    PLUGIN_NAME = "custom"

    def update(self, metadata: dict[str, Any]) -> None:
        version = metadata["version"]
        pinned = [f"{name}=={version}" for name in self.config.get("sibling-dependencies", [])]
        metadata["dependencies"] = pinned + list(self.config.get("dependencies", []))
