"""One micro-batch on its way through the worker: decoded → scoring → produced → acknowledged."""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import Enum

from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.producer.future import FutureRecordMetadata

from moderator import metrics
from moderator.serving import ScoreResponse
from workers.decisions import ValidPost
from workers.features import BuiltRequest, FeatureLookup
from workers.scorer import BatchScorer
from workers.signal_stage import SignalStage


class OutputKind(Enum):
    DECISION = "decision"
    REVIEW = "review"
    DEAD_LETTER = "dead_letter"


@dataclass(slots=True)
class Output:
    """A record produced for an input; the input is finished once all its outputs are acked."""

    record: ConsumerRecord
    future: FutureRecordMetadata
    kind: OutputKind
    label: str  # the action, or the dead-letter reason

    @property
    def partition(self) -> TopicPartition:
        return TopicPartition(self.record.topic, self.record.partition)


@dataclass
class Batch:
    records: list[ConsumerRecord]
    valid: list[ValidPost]
    outputs: list[Output] = field(default_factory=list)
    built: BuiltRequest | None = None
    scoring: Future[ScoreResponse] | None = None
    produced: bool = False
    decode_ms: float = 0.0
    signals_ms: float = 0.0  # the pool signals (OCR, image safety), on the scoring thread
    cache_ms: float = 0.0
    submitted_at: float = field(default_factory=time.perf_counter)
    scored_at: float | None = None  # perf_counter when the model answered
    produce_started: float | None = None  # perf_counter when its decisions were sent
    signal_hits: dict[int, list[str]] = field(default_factory=dict)  # row → cached signals

    def score(
        self, scorer: BatchScorer, signals: SignalStage, features: FeatureLookup
    ) -> ScoreResponse:
        """Run on a scorer thread: the pool signals, the feature lookup, then the model. Stamps
        the answer before the future completes, so the loop always sees the stamp once
        `scored` is true."""
        posts = [v.decoded for v in self.valid]
        started = time.perf_counter()
        if signals.signals:
            self.signal_hits = signals.run(posts).hits
            metrics.STAGE_SECONDS.labels(stage="signals").observe(time.perf_counter() - started)
        looked_up = time.perf_counter()
        self.signals_ms = (looked_up - started) * 1000
        self.built = features.build(posts)
        self.cache_ms = (time.perf_counter() - looked_up) * 1000
        metrics.STAGE_SECONDS.labels(stage="cache").observe(self.cache_ms / 1000)
        response = scorer.score(self.built.request)
        self.scored_at = time.perf_counter()
        return response

    @property
    def scored(self) -> bool:
        return self.scoring is None or self.scoring.done()

    @property
    def acked(self) -> bool:
        return self.produced and all(o.future.is_done for o in self.outputs)
