"""The demo's closing summary: throughput, latency, actions, categories, dead letters."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from rich.console import Console
from rich.table import Table

from moderator.demo.collect import Collected


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
    overview.add_row("valid posts decided", f"{decided} / {figures.expected_valid}")
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
    console.print(overview)

    actions = Counter(d["action"] for d in collected.decisions.values())
    by_action = Table(title="decisions by action")
    by_action.add_column("action")
    by_action.add_column("posts", justify="right")
    for action in ("allow", "label", "review", "block"):
        by_action.add_row(action, str(actions.get(action, 0)))
    console.print(by_action)

    labels = Counter(label for d in collected.decisions.values() for label in d["labels"])
    by_category = Table(title="labels applied")
    by_category.add_column("label")
    by_category.add_column("posts", justify="right")
    for category, count in labels.most_common():
        by_category.add_row(category, str(count))
    console.print(by_category)

    high = Counter(
        category
        for d in collected.decisions.values()
        for category, score in d["scores"].items()
        if score >= 0.5
    )
    by_score = Table(title="posts scoring ≥ 0.5 by category")
    by_score.add_column("category")
    by_score.add_column("posts", justify="right")
    for category, count in high.most_common():
        by_score.add_row(category, str(count))
    console.print(by_score)

    problems = Counter(p for d in collected.decisions.values() for p in d.get("problems", ()))
    if problems:
        by_problem = Table(title="decided with problems (read from what could be used)")
        by_problem.add_column("problem")
        by_problem.add_column("posts", justify="right")
        for problem, count in problems.most_common():
            by_problem.add_row(problem, str(count))
        console.print(by_problem)
    reasons = Counter(letter.reason.value for letter, _ in collected.dead_letters)
    by_reason = Table(title="dead letters by reason")
    by_reason.add_column("reason")
    by_reason.add_column("records", justify="right")
    for reason, count in reasons.most_common():
        by_reason.add_row(reason, str(count))
    console.print(by_reason)
