"""One micro-batch on its way through the worker: decoded → scoring → produced → acknowledged."""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import Enum

from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.producer.future import FutureRecordMetadata

from moderator.serving import ScoreResponse
from workers.decisions import ValidPost
from workers.features import BuiltRequest
from workers.scorer import BatchScorer


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
    cache_ms: float = 0.0
    submitted_at: float = field(default_factory=time.perf_counter)
    scored_at: float | None = None  # perf_counter when the model answered
    produce_started: float | None = None  # perf_counter when its decisions were sent

    def score(self, scorer: BatchScorer) -> ScoreResponse:
        """Run on a scorer thread; stamps the answer before the future completes, so the
        loop always sees the stamp once `scored` is true."""
        assert self.built is not None
        response = scorer.score(self.built.request)
        self.scored_at = time.perf_counter()
        return response

    @property
    def scored(self) -> bool:
        return self.scoring is None or self.scoring.done()

    @property
    def acked(self) -> bool:
        return self.produced and all(o.future.is_done for o in self.outputs)
