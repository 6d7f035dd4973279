"""Pipeline runs on the real broker, Redis and Ray Serve, and the no-op-model ingest run."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from moderator.config import Settings
from moderator.demo.collect import Collected, collect
from moderator.demo.run import produce_samples
from moderator.demo.samples import SampleRecord
from moderator.local.stack import WorkerProcess, create_topics


def fresh_topics(settings: Settings) -> Settings:
    """A copy of settings with topics and a group no other run has used."""
    tag = uuid.uuid4().hex[:8]
    kafka = settings.kafka.model_copy(
        update={
            "posts_topic": f"bench-posts-{tag}",
            "decisions_topic": f"bench-decisions-{tag}",
            "review_topic": f"bench-review-{tag}",
            "dlq_topic": f"bench-posts-{tag}.dlq",
            "group_id": f"bench-{tag}",
        }
    )
    return settings.model_copy(update={"kafka": kafka})


@dataclass(frozen=True)
class PipelineResult:
    posts_per_s: float
    collected: Collected


def decisions_per_second(collected: Collected) -> float:
    """Decisions over the span between the first and the last one (start-up excluded)."""
    stamps = sorted(collected.decision_timestamps_ms.values())
    if len(stamps) < 2:
        return 0.0
    return (len(stamps) - 1) / ((stamps[-1] - stamps[0]) / 1000)


def run_backlog(settings: Settings, samples: list[SampleRecord], log: Path) -> PipelineResult:
    """Pre-load the topic, then let one worker process drain it as fast as it can."""
    settings = fresh_topics(settings)
    create_topics(settings)
    produce_samples(settings, samples, Console(quiet=True))
    worker = WorkerProcess(settings, log).start()
    try:
        collected = collect(
            settings.kafka, len(samples), 0, timeout_s=900, still_running=worker.alive
        )
    finally:
        worker.stop()
    return PipelineResult(decisions_per_second(collected), collected)


def run_open_loop(
    settings: Settings,
    warmup: list[SampleRecord],
    samples: list[SampleRecord],
    rate: float,
    log: Path,
) -> Collected:
    """A running worker fed at a fixed rate, whatever it does (an open-loop producer)."""
    settings = fresh_topics(settings)
    create_topics(settings)
    worker = WorkerProcess(settings, log).start()
    try:
        produce_samples(settings, warmup, Console(quiet=True))
        collect(settings.kafka, len(warmup), 0, timeout_s=300, still_running=worker.alive)
        holder: dict[str, Collected] = {}
        reader = threading.Thread(
            target=lambda: holder.setdefault(
                "c",
                collect(
                    settings.kafka,
                    len(warmup) + len(samples),
                    0,
                    timeout_s=900,
                    still_running=worker.alive,
                ),
            )
        )
        reader.start()
        produce_samples(settings, samples, Console(quiet=True), rate=rate)
        reader.join()
    finally:
        worker.stop()
    collected = holder["c"]
    keep = {s.post_id for s in samples}
    collected.decisions = {k: v for k, v in collected.decisions.items() if k in keep}
    return collected


def added_latency_ms(collected: Collected) -> dict[str, Any]:
    """End-to-end latency minus the model's own compute for the post's batch, and its parts.

    Parts (p50 and p99 of each, per post): `serve_wait` = the Serve call minus the replica's
    compute (queueing behind other batches, @serve.batch's wait, Ray transport);
    `worker` = decode + cache lookup + policy for the post's batch; `loop` = from the model's
    answer to the worker loop taking it up (a poll in progress finishes first); `kafka` = the
    rest: producer linger and broker append of the post and of its decision, the consumer's
    fetch.
    """
    parts: dict[str, list[float]] = {"serve_wait": [], "worker": [], "loop": [], "kafka": []}
    added = []
    for pid, d in collected.decisions.items():
        t = d["timings_ms"]
        total = collected.decision_timestamps_ms[pid] - d["source"]["timestamp_ms"] - t["model"]
        serve_wait = max(t["inference"] - t["model"], 0.0)
        worker = t["decode"] + t["cache"] + t["policy"]
        loop = t.get("loop", 0.0)
        added.append(total)
        parts["serve_wait"].append(serve_wait)
        parts["worker"].append(worker)
        parts["loop"].append(loop)
        parts["kafka"].append(total - serve_wait - worker - loop)
    p50, p99 = _percentiles(added)
    breakdown = {}
    for name, values in parts.items():
        part50, part99 = _percentiles(values)
        breakdown[name] = {"p50": part50, "p99": part99}
    return {"p50": p50, "p99": p99, "parts": breakdown}


def _percentiles(values: list[float]) -> tuple[float, float]:
    p50, p99 = np.percentile(np.asarray(values, dtype=np.float64), [50, 99])
    return float(p50), float(p99)
