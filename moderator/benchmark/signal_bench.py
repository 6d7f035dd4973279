"""The worker's pool signals (OCR, image safety) on one batch stream: cold vs reposted.

    .venv/bin/python -m moderator.benchmark.signal_bench [--images 96] [--threads 2]

Builds posts (memes rendered by moderator.demo.memes, half of them with text, half
photo-like without) and runs them, decoded the way the worker does, through the worker's
signal stage with a real redis-server, twice: first every image is new (OCR and the safety
model run), then the same images again as reposts (every output from Redis). Prints images/s
per pass, the speed-up, and each signal's share of the cold pass. Figures: docs/signals.md.
The stage is the worker's (workers.signal_stage), so it runs in a child process started by
module path (`python -m workers.benchmarks signal-stage`): the library does not import the
app.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from rich.console import Console
from rich.table import Table

from moderator.demo.memes import render_meme
from moderator.local.redis_server import LocalRedis
from moderator.tables import print_table

TEXTS = [
    "when the build is green on a friday",
    "nobody reads the terms and conditions",
    "me explaining why i need another monitor",
    "i will kill you if you touch my coffee",
]


def _records(count: int, seed: int) -> list[bytes]:
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


def _photo(rng: np.random.Generator) -> Any:  # PIL is imported here, where it is used
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
    with tempfile.TemporaryDirectory(prefix="signal-bench-") as directory:
        records, warmup = Path(directory) / "records.jsonl", Path(directory) / "warmup.jsonl"
        records.write_bytes(b"\n".join(_records(args.images, seed=5)))
        # Other images: each signal thread loads its models once (~1 s), not timed.
        warmup.write_bytes(b"\n".join(_records(4 * args.threads, seed=99)))
        with LocalRedis() as server:
            command = [
                sys.executable, "-m", "workers.benchmarks", "signal-stage",
                "--redis-url", server.url, "--records", str(records), "--warmup", str(warmup),
                "--threads", str(args.threads), "--batch", str(args.batch),
            ]  # fmt: skip
            output = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    figures = json.loads(output.stdout.splitlines()[-1])
    table = Table("pass", "images", "seconds", "images/s", "from cache")
    rates = {}
    for run in figures["passes"]:
        rates[run["name"]] = run["images"] / run["seconds"]
        table.add_row(
            run["name"],
            str(run["images"]),
            f"{run['seconds']:.2f}",
            f"{rates[run['name']]:.1f}",
            str(run["cached"]),
        )
    print_table(console, table)
    console.print(f"repost speed-up: {rates['repost'] / rates['cold']:.0f}x")
    # Each signal alone, cold, on one thread: its share of the work.
    share = Table("signal", "ms per image (1 thread)")
    for signal in figures["signals"]:
        share.add_row(signal["signal"], f"{signal['ms']:.0f}")
    print_table(console, share)


if __name__ == "__main__":
    main()
