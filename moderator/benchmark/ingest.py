"""Consumer ingest with a no-op model: Kafka, validation, policy, produce and commit.

Each worker is its own process (one GIL each, as deployed: one worker per pod), all in
one consumer group on a pre-loaded topic, started by module path (NOOP_WORKER: the worker
with a no-op model lives with the worker, in workers/benchmarks.py). Every worker samples
its decided count; the figure is the group's rate over the window in which every worker was
deciding, so start-up, the group join and the tail after the first worker runs dry are left
out.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from moderator.benchmark.pipeline import fresh_topics
from moderator.config import Settings
from moderator.demo.run import produce_samples
from moderator.demo.samples import SampleRecord
from moderator.local.stack import create_topics, worker_env, write_settings_file

# The worker with a no-op model: python -m workers.benchmarks noop-ingest --config FILE
NOOP_WORKER = ["-m", "workers.benchmarks", "noop-ingest"]

# (wall-clock seconds, posts decided so far) for one worker
Progress = list[tuple[float, int]]


@dataclass(frozen=True)
class IngestResult:
    processes: int
    posts_per_s: float
    window_s: float  # the span every worker was deciding in
    decided: int  # by all workers over the whole run


def group_rate(progress: list[Progress]) -> tuple[float, float]:
    """(posts/s of all workers together, window seconds) over the span all were deciding.

    The window opens when the last worker decided its first post and closes when the first
    worker decided its last: outside it, some worker was starting or had nothing left.
    """
    active = [p for p in progress if p and p[-1][1] > 0]
    if len(active) < len(progress):
        raise RuntimeError("a worker decided nothing; the group never ran side by side")
    opens = max(next(t for t, n in p if n > 0) for p in active)
    closes = min(next(t for t, n in p if n >= p[-1][1]) for p in active)
    if closes <= opens:
        raise RuntimeError("the workers never decided at the same time; use more posts")
    decided = sum(_count_at(p, closes) - _count_at(p, opens) for p in active)
    return decided / (closes - opens), closes - opens


def _count_at(progress: Progress, when: float) -> int:
    """Decided count of the last sample at or before `when`."""
    count = 0
    for t, n in progress:
        if t > when:
            break
        count = n
    return count


def run_ingest(
    settings: Settings,
    samples: list[SampleRecord],
    processes: int,
    posts_codec: str | None = None,
) -> IngestResult:
    """Pre-load a fresh topic with `samples`, then drain it with `processes` worker processes.
    `posts_codec`: the compression the posts are produced with (default: the settings')."""
    settings = fresh_topics(settings)
    create_topics(settings, partitions=max(4, processes))
    producing = settings
    if posts_codec is not None:
        kafka = settings.kafka.model_copy(update={"compression_type": posts_codec})
        producing = settings.model_copy(update={"kafka": kafka})
    produce_samples(producing, samples, Console(quiet=True))
    with tempfile.TemporaryDirectory(prefix="moderator-ingest-") as directory:
        config = write_settings_file(settings, Path(directory))
        children = [NoopWorker(config) for _ in range(processes)]
        deadline = time.monotonic() + 600
        try:
            while sum(c.decided for c in children) < len(samples):
                if time.monotonic() > deadline or not all(c.alive() for c in children):
                    decided = sum(c.decided for c in children)
                    raise RuntimeError(f"ingest run stopped at {decided}/{len(samples)}")
                time.sleep(0.05)
            for child in children:
                child.stop()
            progress = [child.progress() for child in children]
        finally:
            for child in children:
                child.kill()
    rate, window = group_rate(progress)
    return IngestResult(processes, rate, window, sum(p[-1][1] for p in progress))


class NoopWorker:
    """One worker process with a no-op model; reads its progress reports from its stdout."""

    def __init__(self, config: Path) -> None:
        self.series: Progress = []
        self.process = subprocess.Popen(
            [sys.executable, *NOOP_WORKER, "--config", str(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=worker_env(),
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with contextlib.suppress(ValueError):  # anything else a library prints
                seconds, decided = line.split()
                self.series.append((float(seconds), int(decided)))

    @property
    def decided(self) -> int:
        return self.series[-1][1] if self.series else 0

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """Close its stdin: it takes a last sample and stops."""
        assert self.process.stdin is not None
        self.process.stdin.close()

    def progress(self, timeout_s: float = 120.0) -> Progress:
        """The samples, once it has stopped."""
        self._reader.join(timeout=timeout_s)
        self.process.wait(timeout=60)
        return self.series

    def kill(self) -> None:
        """Kill it if it still runs; close its pipes."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=5)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()
