"""What reading a post costs beyond parsing it: problems, duplicate fields, normalisation.

    .venv/bin/python -m moderator.benchmark.decode_bench [--repeat 15] [--number 3000]

For each kind of post, the baseline is the bare parse the decoder does anyway
(pydantic-core JSON + `Post.model_validate`), timed in the same process; then
`parse_post` (baseline + key check, duplicate-field scan, caption normalisation and the
problem bookkeeping) and `normalise_text` alone. Best of --repeat runs of --number calls,
in µs per post. A benchmark, not a test: it prints a table.
"""

from __future__ import annotations

import argparse
import base64
import os
import timeit
from collections.abc import Callable

import orjson
import pydantic_core
from rich.console import Console
from rich.table import Table

from moderator.config import DecodeLimits
from moderator.ingest import parse_post
from moderator.schema import Post
from moderator.tables import print_table
from moderator.text import normalise_text

_BASE = {
    "post_id": "p1",
    "author_id": "author-1",
    "created_at": "2026-11-30T12:00:00Z",
    "lang": "en",
    "metadata": {"app": "ios", "tags": ["a", "b"]},
}
KINDS = {
    "ASCII caption": {"caption": "Lovely skill session at the climbing wall, see you next week!"},
    "mixed scripts and emoji": {"caption": "Привет всем \U0001f600 مرحبا, café naïve, see you"},
    "evasion (hidden chars, look-alikes)": {"caption": "i will k\u200bi\u202el\u202cl y\u043eu"},
    "100 KB inline image": {
        "caption": "hi",
        "image_b64": base64.b64encode(os.urandom(75_000)).decode(),
    },
}


def _best_us(call: Callable[[], object], number: int, repeat: int) -> float:
    return min(timeit.repeat(call, number=number, repeat=repeat)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--number", type=int, default=3000)
    args = parser.parse_args()
    limits = DecodeLimits()
    table = Table(title="µs per post (best of runs)")
    for column in ("post", "bare parse", "parse_post", "ratio", "normalise_text"):
        table.add_column(column, justify="left" if column == "post" else "right")
    for name, fields in KINDS.items():
        value = orjson.dumps(_BASE | fields)
        caption = str(fields["caption"])

        def bare(value: bytes = value) -> Post:
            return Post.model_validate(pydantic_core.from_json(value, allow_inf_nan=False))

        def full(value: bytes = value) -> object:
            return parse_post(value, limits, b"p1")

        def text(caption: str = caption) -> object:
            return normalise_text(caption)

        bare_us = _best_us(bare, args.number, args.repeat)
        full_us = _best_us(full, args.number, args.repeat)
        text_us = _best_us(text, args.number, args.repeat)
        table.add_row(
            name, f"{bare_us:.1f}", f"{full_us:.1f}", f"{full_us / bare_us:.2f}x", f"{text_us:.1f}"
        )
    print_table(Console(), table)


if __name__ == "__main__":
    main()
