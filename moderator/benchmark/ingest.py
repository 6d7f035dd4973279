"""Consumer ingest with a no-op model: Kafka, validation, policy, produce and commit.

Each worker is its own process (one GIL each, as deployed: one worker per pod), all in
one consumer group on a pre-loaded topic. Every worker samples its decided count; the
figure is the group's rate over the window in which every worker was deciding, so
start-up, the group join and the tail after the first worker runs dry are left out.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any

import numpy as np
from rich.console import Console

from moderator.benchmark.pipeline import fresh_topics
from moderator.config import Settings
from moderator.demo.run import produce_samples
from moderator.demo.samples import SampleRecord
from moderator.io import create_consumer, create_producer
from moderator.local.stack import create_topics
from moderator.policy import load_policy
from moderator.serving import ModelInfo, ScoreRequest, ScoreResponse
from workers.moderation_worker import ModerationWorker

SAMPLE_EVERY_S = 0.02

# (wall-clock seconds, posts decided so far) for one worker
Progress = list[tuple[float, int]]


class NoopScorer:
    """A model that returns zeros instantly: measures everything but the model."""

    def __init__(self, categories: list[str]) -> None:
        self.categories = categories

    def info(self) -> ModelInfo:
        return ModelInfo(
            "noop", self.categories, image_size=224, image_embedding_dim=8, text_embedding_dim=8
        )

    def score(self, request: ScoreRequest) -> ScoreResponse:
        scores = np.zeros((len(request), len(self.categories)), dtype=np.float32)
        return ScoreResponse(
            "noop",
            self.categories,
            scores,
            new_image_embeddings=np.zeros((len(request.pixels), 8), np.float32),
            new_text_embeddings=np.zeros((len(request.texts), 8), np.float32),
            image_encode_ms=0.0,
            text_encode_ms=0.0,
            score_ms=0.0,
        )


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


def run_ingest(settings: Settings, samples: list[SampleRecord], processes: int) -> IngestResult:
    """Pre-load a fresh topic with `samples`, then drain it with `processes` worker processes."""
    settings = fresh_topics(settings)
    create_topics(settings, partitions=max(4, processes))
    produce_samples(settings, samples, Console(quiet=True))
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    results: Queue[tuple[int, Progress]] = context.Queue()
    decided = context.Array("q", processes)
    children = [
        context.Process(
            target=_worker_process, args=(settings, i, stop, decided, results), daemon=True
        )
        for i in range(processes)
    ]
    for child in children:
        child.start()
    deadline = time.monotonic() + 600
    try:
        while sum(decided[:]) < len(samples):
            if time.monotonic() > deadline or not all(c.is_alive() for c in children):
                raise RuntimeError(f"ingest run stopped at {sum(decided[:])}/{len(samples)}")
            time.sleep(0.05)
        stop.set()
        progress: list[Progress] = [[] for _ in children]
        for _ in children:
            index, series = results.get(timeout=120)
            progress[index] = series
    finally:
        stop.set()
        for child in children:
            child.join(timeout=60)
            if child.is_alive():
                child.kill()
    rate, window = group_rate(progress)
    return IngestResult(processes, rate, window, sum(decided[:]))


def _worker_process(
    settings: Settings,
    index: int,
    stop: Event,
    decided: Any,  # multiprocessing Array of int64, one slot per worker
    results: Queue[tuple[int, Progress]],
) -> None:
    policy = load_policy(settings.policy_path)
    worker = ModerationWorker(
        settings,
        create_consumer(settings.kafka),
        create_producer(settings.kafka),
        NoopScorer(list(policy.categories)),
        policy,
        cache=None,
    )
    halt = threading.Event()
    thread = threading.Thread(target=worker.run, args=(halt,), daemon=True)
    thread.start()
    series: Progress = []
    while not stop.is_set() and thread.is_alive():
        series.append((time.time(), worker.stats.decided))
        decided[index] = worker.stats.decided
        time.sleep(SAMPLE_EVERY_S)
    series.append((time.time(), worker.stats.decided))
    halt.set()
    thread.join(timeout=60)
    worker.consumer.close(autocommit=False)
    worker.producer.close()
    results.put((index, series))
