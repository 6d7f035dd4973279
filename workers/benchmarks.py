"""The worker-side halves of two benchmarks in moderator.benchmark, run by module path.

The library does not import the app, so a benchmark that must run the worker's own code
starts it in a child process, as `moderator bench` starts the worker itself:

    python -m workers.benchmarks noop-ingest --config FILE
        the worker with a no-op model (moderator.benchmark.ingest): decides posts until its
        stdin closes, printing "<unix time> <posts decided>" every SAMPLE_EVERY_S;
    python -m workers.benchmarks signal-stage --redis-url URL --records FILE --warmup FILE
        the worker's signal stage (moderator.benchmark.signal_bench): times it over the
        records (one post per line), cold then reposted, and each signal alone; prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from moderator.config import Settings, load_settings
from moderator.io import create_consumer, create_producer
from moderator.policy import load_policy
from moderator.serving import ModelInfo, ScoreRequest, ScoreResponse
from workers.moderation_worker import ModerationWorker

SAMPLE_EVERY_S = 0.02


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


def noop_ingest(settings: Settings) -> None:
    """Run the worker with NoopScorer and no cache; report its decided count on stdout until
    stdin reaches its end, then stop it without committing more."""
    policy = load_policy(settings.policy_path)
    worker = ModerationWorker(
        settings,
        create_consumer(settings.kafka),
        create_producer(settings.kafka),
        NoopScorer(list(policy.categories)),
        policy,
        cache=None,
    )
    stop = threading.Event()

    def stop_at_end_of_input() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=stop_at_end_of_input, daemon=True).start()
    halt = threading.Event()
    thread = threading.Thread(target=worker.run, args=(halt,), daemon=True)
    thread.start()
    while not stop.is_set() and thread.is_alive():
        print(time.time(), worker.stats.decided, flush=True)
        time.sleep(SAMPLE_EVERY_S)
    print(time.time(), worker.stats.decided, flush=True)
    halt.set()
    thread.join(timeout=60)
    worker.consumer.close(autocommit=False)
    worker.producer.close()


def signal_stage(
    redis_url: str, records: list[bytes], warmup: list[bytes], threads: int, batch: int
) -> dict[str, Any]:
    """Images/s of the pool signals through the worker's SignalStage with a Redis cache: a
    cold pass, the same images again as reposts, and each signal alone on one thread."""
    # Imported here: the no-op ingest workers start without the signals' libraries.
    import redis

    from moderator.cache import SignalCache
    from moderator.config import DecodeLimits
    from moderator.ingest import DecodedPost, load_image, parse_post
    from moderator.signals import SignalSettings, build_signals
    from workers.signal_stage import SignalStage

    signals = build_signals(SignalSettings(threads=threads), "pool")
    cache = SignalCache(redis.Redis.from_url(redis_url), ttl_s=3600)
    stage = SignalStage(signals, cache, threads)
    limits = DecodeLimits()

    def decoded(values: list[bytes]) -> list[DecodedPost]:
        return [
            load_image(parse_post(value, limits), limits, 224, reading_side=stage.reading_side)
            for value in values
        ]

    # Warm-up on other images: each signal thread loads its models once (~1 s), not timed.
    stage.run(decoded(warmup))
    passes = []
    for name in ("cold", "repost"):
        posts = decoded(records)
        started = time.perf_counter()
        cached = 0
        for start in range(0, len(posts), batch):
            report = stage.run(posts[start : start + batch])
            cached += sum(report.cached.values())
        seconds = time.perf_counter() - started
        passes.append({"name": name, "images": len(posts), "seconds": seconds, "cached": cached})
    stage.close()
    alone = []
    for signal in signals:
        posts = decoded(records[: min(32, len(records))])
        started = time.perf_counter()
        for post in posts:
            signal.run(post.subject())
        alone.append(
            {"signal": signal.name, "ms": (time.perf_counter() - started) * 1000 / len(posts)}
        )
    return {"passes": passes, "signals": alone}


def _lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.benchmarks", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    ingest = commands.add_parser("noop-ingest")
    ingest.add_argument("--config", type=Path, required=True)
    stage = commands.add_parser("signal-stage")
    stage.add_argument("--redis-url", required=True)
    stage.add_argument("--records", type=Path, required=True)
    stage.add_argument("--warmup", type=Path, required=True)
    stage.add_argument("--threads", type=int, default=2)
    stage.add_argument("--batch", type=int, default=32)
    args = parser.parse_args(argv)
    if args.command == "noop-ingest":
        noop_ingest(load_settings(args.config))
    else:
        figures = signal_stage(
            args.redis_url, _lines(args.records), _lines(args.warmup), args.threads, args.batch
        )
        print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
