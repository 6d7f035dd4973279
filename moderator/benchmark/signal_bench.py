"""The worker's pool signals (OCR, image safety) on one batch stream: cold vs reposted.

    .venv/bin/python -m moderator.benchmark.signal_bench [--images 96] [--threads 2]

Builds decoded posts the way the worker does (memes rendered by moderator.demo.memes, half
of them with text, half photo-like without), runs them through workers.signal_stage with a
real redis-server, twice: first every image is new (OCR and the safety model run), then the
same images again as reposts (every output from Redis). Prints images/s per pass, the
speed-up, and each signal's share of the cold pass. Figures: docs/signals.md.
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
import redis
from rich.console import Console
from rich.table import Table

from moderator.cache import SignalCache
from moderator.config import DecodeLimits
from moderator.demo.memes import render_meme
from moderator.ingest import load_image, parse_post
from moderator.local.redis_server import LocalRedis
from moderator.signals import SignalSettings, build_signals
from workers.signal_stage import SignalStage

TEXTS = [
    "when the build is green on a friday",
    "nobody reads the terms and conditions",
    "me explaining why i need another monitor",
    "i will kill you if you touch my coffee",
]


def _records(count: int, seed: int) -> list[bytes]:
    import base64

    import orjson

    rng = np.random.default_rng(seed)
    records = []
    for i in range(count):
        text = TEXTS[i % len(TEXTS)] if i % 2 == 0 else ""
        image = render_meme(text or " ", rng) if text else _photo(rng)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=85)
        post = {
            "post_id": f"b{i}",
            "author_id": "a",
            "created_at": "2026-11-30T12:00:00Z",
            "caption": "look",
            "image_b64": base64.b64encode(buffer.getvalue()).decode(),
        }
        records.append(orjson.dumps(post))
    return records


def _photo(rng: np.random.Generator):  # PIL is imported here, where it is used
    from PIL import Image, ImageFilter

    side = int(rng.integers(320, 641))
    noise = (rng.random((side // 8, side // 8, 3)) * 255).astype(np.uint8)
    return Image.fromarray(noise).resize((side, side)).filter(ImageFilter.GaussianBlur(3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    console = Console()
    settings = SignalSettings(threads=args.threads)
    signals = build_signals(settings, "pool")
    records = _records(args.images, seed=5)
    server = LocalRedis().start()
    try:
        cache = SignalCache(redis.Redis.from_url(server.url), ttl_s=3600)
        stage = SignalStage(signals, cache, args.threads)
        limits = DecodeLimits()
        # Warm-up on other images: each signal thread loads its models once (~1 s), not timed.
        stage.run(
            [
                load_image(parse_post(value, limits), limits, 224, reading_side=stage.reading_side)
                for value in _records(4 * args.threads, seed=99)
            ]
        )
        table = Table("pass", "images", "seconds", "images/s", "from cache")
        rates = {}
        for name in ("cold", "repost"):
            posts = [
                load_image(parse_post(value, limits), limits, 224, reading_side=stage.reading_side)
                for value in records
            ]
            started = time.perf_counter()
            cached = 0
            for start in range(0, len(posts), args.batch):
                report = stage.run(posts[start : start + args.batch])
                cached += sum(report.cached.values())
            seconds = time.perf_counter() - started
            rates[name] = len(posts) / seconds
            table.add_row(
                name, str(len(posts)), f"{seconds:.2f}", f"{rates[name]:.1f}", str(cached)
            )
        stage.close()
        console.print(table)
        console.print(f"repost speed-up: {rates['repost'] / rates['cold']:.0f}x")
        # Each signal alone, cold, on one thread: its share of the work.
        share = Table("signal", "ms per image (1 thread)")
        for signal in signals:
            posts = [
                load_image(parse_post(value, limits), limits, 224, reading_side=stage.reading_side)
                for value in records[: min(32, len(records))]
            ]
            started = time.perf_counter()
            for post in posts:
                signal.run(post.subject())
            share.add_row(signal.name, f"{(time.perf_counter() - started) * 1000 / len(posts):.0f}")
        console.print(share)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
