"""The YAML blocks of the guide pages parse, and the KEDA example says what the guide says it does.

PyYAML is a test dependency (noxfile.py); without it, as in a bare checkout, the tests skip.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed")

pytestmark = pytest.mark.no_processes  # these tests start no process

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guide"
_BLOCK = re.compile(r"^```yaml\n(.*?)^```\s*$", re.S | re.M)


def yaml_blocks(path: Path) -> list[str]:
    """The top-level ```yaml blocks of a Markdown page."""
    return _BLOCK.findall(path.read_text(encoding="utf-8"))


def section(path: Path, title: str) -> str:
    """The text of the ``## title`` section of a page."""
    text = path.read_text(encoding="utf-8")
    begin = text.index(f"\n## {title}\n")
    end = text.find("\n## ", begin + 1)
    return text[begin : end if end != -1 else len(text)]


@pytest.mark.parametrize("page", sorted(p.name for p in GUIDE.glob("*.md") if yaml_blocks(p)))
def test_every_yaml_block_parses(page: str) -> None:
    for block in yaml_blocks(GUIDE / page):
        assert list(yaml.safe_load_all(block)), block


def test_the_keda_example_scales_a_deployment_probed_on_healthz_and_readyz() -> None:
    text = section(GUIDE / "operating.md", "Autoscaling with KEDA")
    blocks = _BLOCK.findall(text)
    documents: list[dict[str, Any]] = list(yaml.safe_load_all(blocks[0]))
    by_kind = {document["kind"]: document for document in documents}
    deployment, scaled = by_kind["Deployment"], by_kind["ScaledObject"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"][:4] == ["spoc-workers", "run", "--http", "0.0.0.0:9000"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"name": "ops", "containerPort": 9000} in container["ports"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis-streams"
    assert {"stream", "consumerGroup", "lagCount"} <= set(trigger["metadata"])
    assert trigger["metadata"]["consumerGroup"] == "spoc-workers"  # RedisStream's default group
    assert all(isinstance(value, str) for value in trigger["metadata"].values())  # KEDA wants strings
    [older] = yaml.safe_load(blocks[1])["triggers"]
    assert "pendingEntriesCount" in older["metadata"]
