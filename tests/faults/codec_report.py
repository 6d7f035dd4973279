"""The "Kafka codecs" section of docs/reliability.md, from the rows the codec tests record.

tests/integration/test_kafka_codecs.py appends one JSON line per codec (and one per
unreadable-batch scenario) to $MODERATOR_FAULT_FIGURES through `record`; report.py
splits them off the fault rows with `split_rows` and appends `render(rows)`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

TABLE = "kafka-codecs"

SECTION = """
## Kafka codecs

`tests/integration/test_kafka_codecs.py` on the real broker. *Consumed*: posts
produced by a plain `kafka.KafkaProducer(compression_type=codec)`, configured apart
from the worker's clients, and decided by a worker. *Produced*: that worker's own
decisions, produced with `kafka.compression_type` set to the codec and read back.
*Compressed*: with the codec's library hidden in the test process, the first
batch of every partition holding those records could not be read (so they really were
in that codec), for the posts and for the decisions.

| codec | consumed: posts decided / sent | produced: decisions read back / sent | compressed |
| --- | ---: | ---: | --- |
"""

UNREADABLE = """
Unreadable batches (same file): a partition that holds a batch the worker cannot read
is paused at that offset and retried with back-off while the other partitions flow;
readiness fails with the reason, liveness does not; nothing is skipped or lost.

| scenario | posts | decided while stuck | held at | decided in the end | lost | other figures |
| --- | ---: | ---: | --- | ---: | ---: | --- |
"""


def record(row: dict[str, Any]) -> None:
    """Print a row, and append it to $MODERATOR_FAULT_FIGURES when that is set."""
    row = {"table": TABLE, **row}
    print(f"\n[codecs] {row}")
    target = os.environ.get("MODERATOR_FAULT_FIGURES")
    if target:
        with open(target, "a", encoding="utf-8") as out:
            out.write(json.dumps(row) + "\n")


def split_rows(rows: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(fault rows, codec rows)."""
    faults: list[dict[str, Any]] = []
    codecs: list[dict[str, Any]] = []
    for row in rows:
        (codecs if row.get("table") == TABLE else faults).append(row)
    return faults, codecs


def render(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    text = SECTION
    for row in (r for r in rows if "codec" in r):
        text += (
            f"| {row['codec']} | {row['decided']} / {row['posts']} "
            f"| {row['read_back']} / {row['decisions']} | {row['checked_compressed']} |\n"
        )
    scenarios = [r for r in rows if "scenario" in r]
    if scenarios:
        text += UNREADABLE
        fixed = {"table", "scenario", "posts", "decided_while_stuck", "held_at", "decided", "lost"}
        for row in scenarios:
            other = ", ".join(f"{k}={v}" for k, v in row.items() if k not in fixed)
            text += (
                f"| {row['scenario']} | {row['posts']} | {row['decided_while_stuck']} "
                f"| {row['held_at']} | {row['decided']} | {row['lost']} | {other} |\n"
            )
    return text
