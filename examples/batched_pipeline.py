"""A pipeline whose process hops carry batches: ``Pipeline(batch=256)`` beside the same one unbatched.

parse (a thread) -> checksum (a process, CPU work) -> label (a thread), over
20,000 short lines. With ``batch=256`` the parse stage sends its results to
the process 256 at a time (one pickle, one pipe write), and the process
sends its results back the same way; every item is still handled one by
one and comes out once, in order. A third run gives the process stage a
``process_batch`` instead: it gets each batch in one call. The script prints
the runs' items per second and checks that all gave the same results.

Run it with ``python examples/batched_pipeline.py``.
"""

from __future__ import annotations

import time
import zlib

from spoc.workers.patterns import Pipeline, ProcessStageWorker


def parse(line: str) -> bytes:
    return line.encode()


def checksum(data: bytes) -> int:  # in a child process
    return zlib.crc32(data)


class Checksums(ProcessStageWorker):
    """The checksum stage with ``process_batch``: one call per batch that arrived."""

    def process_batch(self, items: list[bytes]) -> list[int]:
        return [zlib.crc32(data) for data in items]


def label(value: int) -> str:
    return f"{value:08x}"


def run(batch: int, lines: list[str], whole_batches: bool = False) -> tuple[list[str], float]:
    """The results of one pipeline run and its items per second."""
    pipeline = Pipeline(f"checksums-{batch}", maxsize=8, batch=batch)
    pipeline.add_stage(parse)
    if whole_batches:
        pipeline.add_stage(Checksums)
    else:
        pipeline.add_stage(checksum, kind="process")
    pipeline.add_stage(label)
    with pipeline:
        pipeline.start()
        begun = time.perf_counter()
        pipeline.feed(lines)
        results = list(pipeline.results())
        elapsed = time.perf_counter() - begun
    stats = pipeline.stats
    assert stats.accepted == stats.emitted == len(lines) and stats.lost == 0, stats
    return results, len(lines) / elapsed


def main() -> None:
    lines = [f"line {i}" for i in range(20_000)]
    one_by_one, unbatched_rate = run(1, lines)
    batched, batched_rate = run(256, lines)
    whole, whole_rate = run(256, lines, whole_batches=True)
    assert batched == one_by_one == whole  # the same results, in the same order
    print(f"unbatched: {unbatched_rate:,.0f} items/s")
    print(f"batch=256: {batched_rate:,.0f} items/s ({batched_rate / unbatched_rate:.1f}x)")
    print(f"batch=256, process_batch: {whole_rate:,.0f} items/s ({whole_rate / unbatched_rate:.1f}x)")
    print("done")


if __name__ == "__main__":
    main()
