"""A running pipeline to break: real broker, Redis and Ray Serve, worker processes, a reader."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from moderator.config import Settings
from moderator.demo.collect import Collected, collect
from moderator.demo.samples import SampleRecord, sample_stream
from moderator.io import create_producer
from moderator.local.stack import WorkerProcess, create_topics


@dataclass
class FaultRun:
    settings: Settings
    samples: list[SampleRecord]
    log_dir: Path
    workers: list[WorkerProcess] = field(default_factory=list)
    collected: Collected = field(default_factory=Collected)
    _reader: threading.Thread | None = None

    @property
    def valid_ids(self) -> set[str]:
        return {s.post_id for s in self.samples if s.valid and s.post_id}

    @property
    def expected_dead(self) -> int:
        return sum(not s.valid for s in self.samples)

    def start_worker(self) -> WorkerProcess:
        log = self.log_dir / f"worker-{len(self.workers)}.log"
        worker = WorkerProcess(self.settings, log).start()
        self.workers.append(worker)
        return worker

    def produce(self, part: slice = slice(None)) -> None:
        """Send the stream's records (`part` of them: a test may produce in steps)."""
        producer = create_producer(self.settings.kafka)
        for sample in self.samples[part]:
            producer.send(self.settings.kafka.posts_topic, key=sample.key, value=sample.value)
        producer.flush()
        producer.close()

    def start_reader(self, timeout_s: float = 600) -> None:
        def read() -> None:
            collect(
                self.settings.kafka,
                len(self.valid_ids),
                self.expected_dead,
                timeout_s,
                out=self.collected,
            )

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()

    def wait_for(self, done: Callable[[], bool], timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met in {timeout_s} s: {self.logs_tail()}")
            time.sleep(0.1)

    def decided_share(self) -> float:
        return len(self.collected.decisions) / max(len(self.valid_ids), 1)

    def finish(self, timeout_s: float = 600) -> None:
        assert self._reader is not None
        self._reader.join(timeout=timeout_s)
        for worker in self.workers:
            worker.stop()

    def lost(self) -> set[str]:
        return self.valid_ids - set(self.collected.decisions)

    def duplicates(self) -> int:
        return self.collected.decision_records - len(self.collected.decisions)

    def logs_tail(self) -> str:
        return "\n".join(
            path.read_text()[-1500:] for path in sorted(self.log_dir.glob("worker-*.log"))
        )


def fault_run(settings: Settings, tmp_path: Path, posts: int = 2000, **stream: float) -> FaultRun:
    create_topics(settings)
    options = {"image_share": 0.1, "repost_share": 0.5, "malformed_share": 0.01} | stream
    samples = sample_stream(posts, seed=31, run_id=settings.kafka.group_id, **options)
    return FaultRun(settings=settings, samples=samples, log_dir=tmp_path)
