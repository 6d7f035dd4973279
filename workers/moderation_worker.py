"""The worker's loop: poll micro-batches, score them on Ray Serve, decide, produce, commit.

It drives the stages and keeps nothing else: decoding lives in workers.decode_stage, the
feature cache in workers.features, and what goes to Kafka in workers.outputs.

Delivery is at-least-once: a record's offset is committed only after its decision
or dead-letter record is acknowledged by the broker, per partition, up to the
highest contiguous finished offset. Up to `worker.max_in_flight_batches` batches
are scored concurrently; at that bound the assigned partitions are paused while
poll keeps running, so a slow model never costs the group membership. A
rebalance or SIGTERM drains the batches in flight and commits before partitions
are given up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata

from moderator import metrics
from moderator.cache import FeatureCache, SignalCache
from moderator.config import Settings
from moderator.errors import InvalidPostError
from moderator.policy import CompiledPolicy, PolicyError, PolicyService, PolicySource
from moderator.signals import build_signals
from workers.batch import Batch
from workers.decisions import ValidPost, make_decisions
from workers.decode_stage import DecodeStage
from workers.features import FeatureLookup, check_frame_pooling
from workers.health import WorkerHealth
from workers.offsets import OffsetTracker
from workers.outputs import Outputs
from workers.poll_guard import PollGuard
from workers.quarantine import build_quarantine
from workers.scorer import BatchScorer
from workers.signal_stage import SignalStage
from workers.telemetry import WorkerTelemetry

logger = logging.getLogger(__name__)


@dataclass
class WorkerStats:
    consumed: int = 0
    decided: int = 0
    dead_lettered: int = 0
    batches: int = 0
    pauses: int = 0
    rebalances: int = 0
    actions: Counter[str] = field(default_factory=Counter)


class _DrainOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]  # kafka-python: untyped
    def __init__(self, worker: ModerationWorker) -> None:
        self.worker = worker

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Finish and commit what we hold before another member takes these partitions.
        if not revoked:
            return  # the first join revokes nothing
        if not self.worker.running:
            # consumer.close() after run() ended: drained already, or abandoned after an
            # error (those batches stay uncommitted and are re-delivered).
            self.worker.tracker.forget(set(revoked))
            self.worker.poll_guard.forget(revoked)
            return
        self.worker.stats.rebalances += 1
        self.worker.drain()
        self.worker.tracker.forget(set(revoked))
        self.worker.telemetry.forget(revoked)
        self.worker.poll_guard.forget(revoked)

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        logger.info("assigned %d partitions", len(assigned))


class ModerationWorker:
    def __init__(
        self,
        settings: Settings,
        consumer: KafkaConsumer,
        producer: KafkaProducer,
        scorer: BatchScorer,
        policy: CompiledPolicy | PolicySource | PolicyService,
        cache: FeatureCache | None,
        health: WorkerHealth | None = None,
    ) -> None:
        self.settings = settings
        self.consumer = consumer
        self.producer = producer
        self.scorer = scorer
        self.policy = PolicyService.wrap(policy)
        if self.policy.quarantine is None:
            self.policy.quarantine = build_quarantine(settings)
        self.cache = cache
        self.info = scorer.info()
        check_frame_pooling(settings.limits.media, self.info)
        self.signals = SignalStage(
            build_signals(settings.signals, "pool"),
            SignalCache(cache.client, settings.redis.feature_ttl_s) if cache is not None else None,
            settings.signals.threads,
        )
        # Categories a signal scores for a model that does not (image safety's sexual).
        self.signal_categories = self.signals.categories(self.info.categories)
        scored = [*self.info.categories, *self.signal_categories]
        try:
            self.policy.check_categories(scored, sorted(self.info.semantic_banks))
        except PolicyError as exc:
            unscored = set(self.policy.source.current().categories) - set(scored)
            raise PolicyError(f"{exc}{self.signals.switched_off(sorted(unscored))}") from exc
        self.tracker = OffsetTracker()
        self.stats = WorkerStats()
        self.health = health or WorkerHealth(stall_after_s=float("inf"))
        # An unreadable record batch holds back its partition only, never stops the loop.
        self.poll_guard = PollGuard(
            consumer, self.health, settings.worker.stuck_retry_s, settings.worker.stuck_retry_max_s
        )
        self.in_flight: list[Batch] = []
        self.paused = False
        self._executor = ThreadPoolExecutor(
            max_workers=settings.worker.max_in_flight_batches, thread_name_prefix="scorer"
        )
        self.decoder = DecodeStage(settings.limits, self.info.image_size, self.signals.reading_side)
        self.features = FeatureLookup(cache, self.info)
        self.outputs = Outputs(settings, producer, self.tracker, self.stats)
        self._last_commit = 0.0
        self.telemetry = WorkerTelemetry(consumer, self.info.model_version)
        self.running = False

    def run(self, stop: threading.Event) -> WorkerStats:
        """Consume until `stop` is set, then drain what is in flight, commit and return."""
        kafka, worker = self.settings.kafka, self.settings.worker
        self.consumer.subscribe([kafka.posts_topic], listener=_DrainOnRevoke(self))
        logger.info("worker consuming %s as group %s", kafka.posts_topic, kafka.group_id)
        self.health.set_ready(True)
        self.running = True
        try:
            while not stop.is_set():
                self.health.beat()
                self._apply_backpressure()
                # Poll briefly while work is in flight so finished batches are produced promptly.
                timeout = 5 if self.in_flight else worker.poll_timeout_ms
                if self.paused and self._wait_for_a_scored_batch(0.05):
                    timeout = 0  # paused: nothing to fetch, so sleep on the model, not on poll
                polled = self.poll_guard.poll(timeout, worker.batch_size, backpressure=self.paused)
                records = [record for batch in polled.values() for record in batch]
                if records:
                    self.submit(records)
                self.advance()
                self.commit(force=False)
                self.telemetry.tick(self.policy.policy, len(self.in_flight))
            self.drain()
        finally:
            self.running = False
            self.in_flight.clear()  # empty after drain(); abandoned (uncommitted) after an error
            self.health.set_ready(False)
            self._executor.shutdown(wait=False, cancel_futures=True)
            self.decoder.close()
            self.signals.close()
        logger.info(
            "worker stopped: %s decided, %s dead-lettered, %s pauses, %s rebalances",
            self.stats.decided,
            self.stats.dead_lettered,
            self.stats.pauses,
            self.stats.rebalances,
        )
        return self.stats

    def submit(self, records: list[ConsumerRecord]) -> Batch:
        """Decode a polled batch, dead-letter the bad records, and start scoring the rest."""
        metrics.POSTS_CONSUMED.inc(len(records))
        self.stats.consumed += len(records)
        self.stats.batches += 1
        started = time.perf_counter()
        batch = Batch(records=records, valid=[])
        for record in records:
            self.tracker.started(TopicPartition(record.topic, record.partition), record.offset)
        banks = self.policy.policy.banks
        pdq = bool(banks and banks.needs_pdq)  # digests once, here: only what the banks read
        for record, outcome in self.decoder.decode_all(records, pdq=pdq):
            if isinstance(outcome, InvalidPostError):
                batch.outputs.append(self.outputs.dead_letter(record, outcome))
            else:
                batch.valid.append(ValidPost(record, outcome))
        decoded = time.perf_counter()
        batch.decode_ms = (decoded - started) * 1000
        metrics.STAGE_SECONDS.labels(stage="decode").observe(decoded - started)
        if batch.valid:
            metrics.BATCH_SIZE.observe(len(batch.valid))
            # Signals, feature lookup and model on a scorer thread: the loop keeps polling.
            batch.scoring = self._executor.submit(
                batch.score, self.scorer, self.signals, self.features
            )
        else:
            batch.produced = True
        self.in_flight.append(batch)
        metrics.IN_FLIGHT_RECORDS.set(self._records_in_flight())
        return batch

    def advance(self) -> None:
        """Produce decisions for scored batches; retire batches whose outputs are all acked."""
        for batch in self.in_flight:
            if not batch.produced and batch.scored:
                self._decide(batch)
        while self.in_flight and self.in_flight[0].acked:
            self.outputs.retire(self.in_flight.pop(0))
        # Later batches may finish first; retire them too (commit stays contiguous).
        for batch in [b for b in self.in_flight if b.acked]:
            self.in_flight.remove(batch)
            self.outputs.retire(batch)
        metrics.IN_FLIGHT_RECORDS.set(self._records_in_flight())

    def drain(self) -> None:
        """Finish every batch in flight (waiting for the model and the broker), then commit."""
        for batch in self.in_flight:
            if not batch.produced:
                if batch.scoring is not None:
                    batch.scoring.result()  # raises if the model call failed for good
                self._decide(batch)
        self.producer.flush(timeout=self.settings.worker.produce_timeout_s)
        for batch in self.in_flight:
            self.outputs.retire(batch)
        self.in_flight.clear()
        metrics.IN_FLIGHT_RECORDS.set(0)
        self.commit(force=True)

    def _decide(self, batch: Batch) -> None:
        """A scored batch: store the new embeddings, apply the policy, produce the decisions."""
        assert batch.scoring is not None and batch.built is not None
        response = batch.scoring.result()
        scored = time.perf_counter()
        # Until the model answered; the loop's turn after that is reported apart ("loop").
        answered = batch.scored_at if batch.scored_at is not None else scored
        before_model = batch.decode_ms + batch.signals_ms + batch.cache_ms
        inference_ms = (answered - batch.submitted_at) * 1000 - before_model
        metrics.STAGE_SECONDS.labels(stage="inference").observe(max(inference_ms, 0) / 1000)
        self.features.write_back(batch.built, response)
        timings = {
            "decode": round(batch.decode_ms, 3),
            "signals": round(batch.signals_ms, 3),
            "cache": round(batch.cache_ms, 3),
            "inference": round(inference_ms, 3),
            "loop": round((scored - answered) * 1000, 3),
            # Pure compute inside the replica (the merged batch's forward passes).
            "model": round(response.encode_ms + response.score_ms, 3),
        }
        hits = [
            [*embeddings, *batch.signal_hits.get(row, ())]
            for row, embeddings in enumerate(batch.built.cache_hits)
        ]
        decisions = make_decisions(
            batch.valid, response, hits, self.policy, timings, self.signal_categories
        )
        policy_s = time.perf_counter() - scored
        metrics.STAGE_SECONDS.labels(stage="policy").observe(policy_s)
        self.outputs.produce_decisions(batch, decisions, policy_s)

    def _records_in_flight(self) -> int:
        return sum(len(b.records) for b in self.in_flight)

    def _wait_for_a_scored_batch(self, timeout_s: float) -> bool:
        """Block until a batch in flight is scored or `timeout_s` passes; False if none waits.

        A paused worker would otherwise spin on 5 ms polls, taking CPU from the model on a
        shared node (~12% of a core in a py-spy profile of the 2-core bench).
        """
        waiting = [
            b.scoring
            for b in self.in_flight
            if not b.produced and b.scoring is not None and not b.scoring.done()
        ]
        if not waiting or any(b.scored and not b.produced for b in self.in_flight):
            return False
        wait(waiting, timeout=timeout_s, return_when=FIRST_COMPLETED)
        return True

    def _apply_backpressure(self) -> None:
        # Two bounds: batches waiting for the model, and records waiting for anything
        # (the broker's acks included), which bounds memory and re-deliveries after a crash.
        worker = self.settings.worker
        scoring = sum(1 for b in self.in_flight if not b.produced)
        full = (
            scoring >= worker.max_in_flight_batches
            or self._records_in_flight() >= worker.max_in_flight_records
        )
        if full and not self.paused:
            self.consumer.pause(*self.consumer.assignment())
            self.paused = True
            self.stats.pauses += 1
        elif not full and self.paused:
            # Partitions held at an unreadable batch stay paused until their retry is due.
            self.consumer.resume(*(self.consumer.paused() - self.poll_guard.held()))
            self.paused = False
        elif self.paused:
            # Partitions assigned by a rebalance while paused start unpaused.
            newly = self.consumer.assignment() - self.consumer.paused()
            if newly:
                self.consumer.pause(*newly)
        metrics.PAUSED_PARTITIONS.set(len(self.consumer.paused() - self.poll_guard.held()))

    def commit(self, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last_commit < self.settings.worker.commit_interval_ms / 1000:
            return
        self._last_commit = now
        points = self.tracker.commit_points()
        if not points:
            return
        offsets = {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in points.items()}
        try:
            self.consumer.commit(offsets)
            metrics.COMMITS.labels(outcome="ok").inc()
        except (CommitFailedError, KafkaError) as exc:
            # The group moved on (rebalance): these records will be re-delivered. Allowed.
            metrics.COMMITS.labels(outcome="failed").inc()
            logger.warning("offset commit failed, records will be re-delivered: %s", exc)
