"""A server an operator can see and steer: probes, metrics, remote control and recycling.

Needs the http extra: pip install "./packages/spoc-workers-core[http]".
Run it with ``python examples/operated.py``; it asks its own endpoint what a
kubelet, Prometheus and an operator would, then stops. With
``spoc-workers run --http 127.0.0.1:9000 examples.operated:make_server`` the
same server runs until Ctrl-C: open http://127.0.0.1:9000/ in a browser.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from spoc.workers import ProcessWorker, Recycle, Server, ThreadWorker


class Poller(ThreadWorker):
    """Polls something every 0.2 s."""

    def main(self) -> None:
        while self.sleep(0.2):
            pass


class Cruncher(ProcessWorker):
    """A process that would grow over time: recycled every 2 seconds here."""

    def main(self) -> None:
        while self.sleep(0.2):
            pass


def make_server(http: str | None = None, token: str | None = None) -> Server:
    """The server; ``spoc-workers run --http ADDRESS`` gives it its endpoint."""
    server = Server("operated", http=http, http_token=token)
    server.add_worker(Poller("poller"), restart="always")
    server.add_worker(Cruncher("cruncher"), restart="always", recycle=Recycle(seconds=2, jitter=0.1))
    return server


def ask(url: str, token: str | None = None) -> tuple[int, str]:
    """GET ``url`` (POST when a token is given); the status and the body."""
    request = urllib.request.Request(url, method="POST" if token else "GET")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def wait_until(condition: Callable[[], bool], timeout: float = 30) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the server did not get there in time")
        time.sleep(0.05)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    token = secrets.token_hex(16)
    with make_server(http="127.0.0.1:0", token=token) as server:  # port 0: a free one
        server.start()
        host, port = server.http_address or ("", 0)
        base = f"http://{host}:{port}"
        wait_until(lambda: ask(f"{base}/readyz")[0] == 200)
        print("healthz:", ask(f"{base}/healthz")[0], "readyz:", ask(f"{base}/readyz")[0])

        status, _ = ask(f"{base}/workers/poller/restart", token)
        print("POST /workers/poller/restart:", status)
        wait_until(lambda: server.status()[0]["restart_reasons"].get("manual") == 1)

        def recycled() -> bool:
            entry = server.status()[1]
            return bool(entry["restart_reasons"].get("recycle", 0) >= 1 and entry["state"] == "running")

        wait_until(recycled)
        for entry in json.loads(ask(f"{base}/status")[1]):
            print(f"{entry['name']}: {entry['state']}, restarts {entry['restart_reasons']}")

        for line in ask(f"{base}/metrics")[1].splitlines():
            if line.startswith("spoc_worker_restarts_total") and not line.endswith(" 0.0"):
                print(line)
    print("done")
