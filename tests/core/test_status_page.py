"""The status page in a real headless Chromium (Debian's ``chromium``): every worker and its state.

Skipped when chromium is absent, unless ``SPOC_WORKERS_REQUIRE_CHROMIUM=1`` (as ``.ci/run`` sets).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import struct
import subprocess
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("prometheus_client", reason="the http extra of spoc-workers-core is not installed")

from ops_targets import Idle, ProcessIdle, Tally
from spoc.workers import Server
from spoc.workers._statuspage import REFRESH_MS
from targets import wait_for

REQUIRE_ENV = "SPOC_WORKERS_REQUIRE_CHROMIUM"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PHONE, DESKTOP = (390, 844), (1280, 800)
STEP = 15  # jobs the counting worker finds done at each look: 7.5/s at the page's refresh

if CHROMIUM is None:
    if os.environ.get(REQUIRE_ENV) == "1":
        raise RuntimeError(
            f"${REQUIRE_ENV}=1 but no chromium is installed (Debian: apt-get install chromium)"
        )
    pytest.skip("chromium is not installed (Debian: apt-get install chromium)", allow_module_level=True)


def chromium(url: str, *args: str) -> str:
    """Run headless Chromium on ``url`` with ``args``; its stdout. Its whole process group ends with it."""
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=3000",  # the page's script runs, and refreshes once
                *args,
                url,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        try:
            out, _ = proc.communicate(timeout=120)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # any helper it left
            except ProcessLookupError:
                pass
            proc.wait()
    assert proc.returncode == 0, f"chromium exited with {proc.returncode}"
    return out


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def cells(dom: str, label: str) -> dict[str, str]:
    """Worker name -> the text of its cell labelled ``label`` (tags stripped, notes kept apart by |)."""
    found = {}
    for name, row in re.findall(r'<tr data-worker="([^"]+)"[^>]*>(.*?)</tr>', dom, re.S):
        cell = re.search(rf'<td data-label="{label}"[^>]*>(.*?)</td>', row, re.S)
        assert cell is not None, f"no {label!r} cell for {name!r}"
        found[name] = re.sub(r"<[^>]+>", "|", cell[1]).strip("|").replace("||", "|")
    return found


def test_the_page_shows_every_worker_and_its_state_in_chromium(tmp_path: Path) -> None:
    server = Server("page-test", http="127.0.0.1:0")
    server.add_worker(Idle("email-sender"))
    server.add_worker(ProcessIdle("image-resizer"))
    server.add_worker(Idle("held"))
    server.add_worker(Tally("importer", step=STEP))
    with server:
        server.start()
        wait_for(lambda: server.readiness()["ready"], timeout=30)
        server.stop_worker("held")
        wait_for(lambda: server.status()[2]["state"] == "stopped", timeout=30)
        assert [e["jobs_done"] for e in server.status()[:3]] == [None, None, None]
        address = server.http_address
        assert address is not None
        url = f"http://{address[0]}:{address[1]}/"

        dom = chromium(url, "--dump-dom")
        rows = dict(re.findall(r'<tr data-worker="([^"]+)" data-state="([^"]+)"', dom))
        assert rows == {e["name"]: e["state"] for e in server.status()}
        assert rows == {
            "email-sender": "running",
            "image-resizer": "running",
            "held": "stopped",
            "importer": "running",
        }
        assert "stopped on request" in dom
        assert "live, updated" in dom  # the refresh reached ./status and rendered it
        # The throughput: STEP jobs between the page's first render and its refresh, 2 s later
        # (Chromium's virtual time: REFRESH_MS or a little more, however long the real requests took).
        throughput = cells(dom, "Throughput")
        rate, total = throughput.pop("importer").split("|")
        assert re.fullmatch(r"\d+(\.\d)?/s", rate), rate
        assert 0 < float(rate[:-2]) <= STEP / (REFRESH_MS / 1000) + 0.05  # shown to 0.1 below 10/s
        assert re.fullmatch(r"\d+ jobs", total), total
        assert throughput == {"email-sender": "\u2014", "image-resizer": "\u2014", "held": "\u2014"}

        for width, height in (PHONE, DESKTOP):
            shot = tmp_path / f"status-{width}x{height}.png"
            chromium(url, f"--screenshot={shot}", f"--window-size={width},{height}")
            assert png_size(shot) == (width, height)
            assert shot.stat().st_size > 10_000  # a rendered page, not a blank one
