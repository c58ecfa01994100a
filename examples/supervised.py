"""Supervision: a Server that restarts a crashed worker with backoff and watches heartbeats.

The "flaky" thread worker loses its (pretend) connection once; the server
restarts it after a backoff delay. The "cruncher" process worker is CPU-bound
and proves it is alive with ``heartbeat()``; if it ever went silent for more
than its ``heartbeat_timeout``, the server would dump its stack, kill it and
start it again.

Run it directly (it stops itself after a few seconds)::

    python examples/supervised.py [SECONDS]

or with the command line, until Ctrl+C or SIGTERM (SIGUSR1 logs the status)::

    spoc-workers run examples.supervised:server
"""

from __future__ import annotations

import json
import logging
import sys
import threading

from spoc.workers import Backoff, ProcessWorker, Server, ThreadWorker


class Flaky(ThreadWorker):
    """Polls every 0.2 s; its first run loses the connection after three polls."""

    restart = "on-failure"

    def __init__(self, name: str = "flaky") -> None:
        super().__init__(name)
        self.runs = 0

    def setup(self) -> None:
        self.runs += 1
        self.polls = 0

    def main(self) -> None:
        while self.sleep(0.2):
            self.polls += 1
            if self.runs == 1 and self.polls == 3:
                raise ConnectionError("lost the connection (on purpose, once)")


class Cruncher(ProcessWorker):
    """Burns CPU in its own process, with a heartbeat after each chunk of work."""

    restart = "always"
    heartbeat_timeout = 5.0

    def main(self) -> None:
        chunks = 0
        while self.is_running:
            sum(i * i for i in range(20_000))
            chunks += 1
            self.heartbeat()
        print(f"cruncher: {chunks} chunks of work", flush=True)


server = Server("supervised", backoff=Backoff(base=0.2, factor=2.0, cap=2.0), max_restarts=10)
server.add_worker(Flaky())
server.add_worker(Cruncher("cruncher"))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.5
    timer = threading.Timer(seconds, server.stop)
    timer.start()
    status = server.run_forever()
    timer.cancel()
    print(json.dumps(server.status(), indent=2))
    print("done" if status == 0 else f"exit status {status}")
    sys.exit(status)
