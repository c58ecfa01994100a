"""``tests/support/check_api_pages.py`` finds private names in rendered signatures and "Bases:" lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from check_api_pages import main, private_names

pytestmark = pytest.mark.no_processes  # these tests start no process

# The HTML mkdocstrings renders, in miniature (what the site had before the fix).
BASES = (
    '<p class="doc doc-class-bases">Bases: <code><span>_JobMixin</span></code>, <code>ThreadWorker</code></p>'
)
SIGNATURE = (
    '<div class="doc-signature highlight"><pre><code><span>JobProcessor</span>('
    "<span>stop_timeout</span>: <span>float</span> = <span>_DEFAULT_STOP_TIMEOUT</span>)</code></pre></div>"
)
VALUE = (
    '<div class="doc-signature highlight"><pre><code>END_OF_STREAM: Any = _EndOfStream()</code></pre></div>'
)
PARAMETERS = (
    "<table><thead><tr><th>Name</th><th>Type</th><th>Description</th><th>Default</th></tr></thead>"
    "<tbody><tr><td><code>stop_timeout</code></td><td><code>float</code></td><td>see _here_</td>"
    '<td><code><span title="spoc.workers.patterns._jobs._DEFAULT_STOP_TIMEOUT">_DEFAULT_STOP_TIMEOUT</span>'
    "</code></td></tr></tbody></table>"
)
CLEAN = (
    '<p class="doc doc-class-bases">Bases: <code>ThreadWorker</code></p>'
    '<div class="doc-signature highlight"><pre><code>'
    "JobProcessor(name: str | None, stop_timeout: float = 5.0)</code></pre></div>"
    "<p>Prose may name _private things; only signatures and bases are checked.</p>"
)


def test_private_base_default_and_value_are_found() -> None:
    found = private_names(BASES + SIGNATURE + VALUE)
    assert [kind for kind, _ in found] == ["bases", "signature", "signature"]
    assert found[0][1] == "Bases: _JobMixin, ThreadWorker"
    assert "_DEFAULT_STOP_TIMEOUT" in found[1][1]
    assert "_EndOfStream()" in found[2][1]


def test_a_private_default_in_a_parameter_table_is_found() -> None:
    assert private_names(PARAMETERS) == [("default", "_DEFAULT_STOP_TIMEOUT")]
    assert private_names(PARAMETERS.replace(">_DEFAULT_STOP_TIMEOUT<", ">5.0<")) == []


def test_public_names_pass() -> None:
    assert private_names(CLEAN) == []


def test_main_fails_on_a_page_with_a_private_name(tmp_path: Path) -> None:
    api = tmp_path / "api" / "patterns"
    api.mkdir(parents=True)
    (api / "index.html").write_text(CLEAN)
    assert main([str(tmp_path)]) == 0
    (api / "index.html").write_text(CLEAN + SIGNATURE)
    assert main([str(tmp_path)]) == 1


def test_main_fails_without_pages_or_signatures(tmp_path: Path) -> None:
    assert main([str(tmp_path)]) == 1  # no api/ at all
    api = tmp_path / "api"
    api.mkdir()
    (api / "index.html").write_text("<p>no signatures here</p>")
    assert main([str(tmp_path)]) == 1
