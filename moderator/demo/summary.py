"""The demo's closing summary: throughput, latency, actions, categories, problems, dead
letters."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from rich.console import Console
from rich.table import Table

from moderator.demo.collect import Collected
from moderator.schema import Action
from moderator.tables import print_table


@dataclass
class RunFigures:
    produced: int
    expected_valid: int
    expected_dead: int
    seconds: float  # first record produced → last decision seen
    first_decision_s: float | None  # command start → first decision seen
    stack_rss_mib: float | None


def latency_percentiles_ms(collected: Collected) -> dict[str, float]:
    latencies = [
        collected.decision_timestamps_ms[pid] - d["source"]["timestamp_ms"]
        for pid, d in collected.decisions.items()
    ]
    if not latencies:
        return {}
    values = np.percentile(np.asarray(latencies, dtype=np.float64), [50, 95, 99])
    return {"p50": float(values[0]), "p95": float(values[1]), "p99": float(values[2])}


def render_summary(console: Console, figures: RunFigures, collected: Collected) -> None:
    decided = len(collected.decisions)
    dead = len(collected.dead_letters)
    rate = decided / figures.seconds if figures.seconds > 0 else 0.0
    overview = Table(title="moderator demo", show_header=False)
    overview.add_row("records produced", str(figures.produced))
    overview.add_row("posts decided", f"{decided} / {figures.expected_valid}")
    overview.add_row("dead-lettered", f"{dead} / {figures.expected_dead}")
    overview.add_row(
        "duplicate decisions (re-deliveries)", str(collected.decision_records - decided)
    )
    overview.add_row("throughput", f"{rate:.1f} posts/s over {figures.seconds:.1f} s")
    for name, value in latency_percentiles_ms(collected).items():
        overview.add_row(f"end-to-end latency {name}", f"{value:.0f} ms")
    if figures.first_decision_s is not None:
        overview.add_row("first decision after start", f"{figures.first_decision_s:.1f} s")
    if figures.stack_rss_mib is not None:
        overview.add_row("stack memory (RSS)", f"{figures.stack_rss_mib:.0f} MiB")
    hits = sum(1 for d in collected.decisions.values() if "image" in d.get("cache_hits", []))
    overview.add_row("image features from cache", str(hits))
    with_text = sum(1 for d in collected.decisions.values() if d.get("image_text"))
    changed = sum(1 for d in collected.decisions.values() if d.get("image_text_changed"))
    overview.add_row("posts with text read from the image", str(with_text))
    overview.add_row("decisions the image text changed (policy)", str(changed))
    print_table(console, overview)

    decisions = list(collected.decisions.values())
    actions = Counter(d["action"] for d in decisions)
    # Every action, in severity order, zeros included.
    order = tuple(action.value for action in Action)
    _print_counts(console, "decisions by action", "action", "posts", actions, order=order)
    labels = Counter(label for d in decisions for label in d["labels"])
    _print_counts(console, "labels applied", "label", "posts", labels)
    high = Counter(c for d in decisions for c, score in d["scores"].items() if score >= 0.5)
    _print_counts(console, "posts scoring ≥ 0.5 by category", "category", "posts", high)
    problems = Counter(p for d in decisions for p in d.get("problems", ()))
    if problems:
        title = "decided with problems (read from what could be used)"
        _print_counts(console, title, "problem", "posts", problems)
    reasons = Counter(letter.reason.value for letter, _ in collected.dead_letters)
    _print_counts(console, "dead letters by reason", "reason", "records", reasons)


def _print_counts(
    console: Console,
    title: str,
    key: str,
    unit: str,
    counts: Counter[str],
    order: tuple[str, ...] | None = None,
) -> None:
    table = Table(title=title)
    table.add_column(key)
    table.add_column(unit, justify="right")
    for name in order or [name for name, _ in counts.most_common()]:
        table.add_row(name, str(counts.get(name, 0)))
    print_table(console, table)
