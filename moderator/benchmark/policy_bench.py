"""Policy engine benchmark: the default policy, compiled vs cel-python, on one core.

    .venv/bin/python -m moderator.benchmark.policy_bench                 # engine table
    .venv/bin/python -m moderator.benchmark.policy_bench --bank 1000000  # + PDQ bank at 1M hashes

Each post gets a fresh `PolicyInput` (as in the worker) with random scores
over the eight categories, a caption drawn from a mix that hits the term lists,
author counters and occasional bank matches. The same rules run through
cel-python's InterpretedRunner and CompiledRunner (its transpiler) as
baselines; decisions are checked equal on the baseline's sample. Target:
>= 20,000 posts/s for the compiled engine.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import time
from pathlib import Path

from moderator.config import DEFAULT_POLICY
from moderator.policy.celbaseline import CelpyPolicy
from moderator.policy.engine import CompiledPolicy
from moderator.policy.inputs import AuthorCounters, PolicyInput
from moderator.policy.loader import load_policy

CAPTIONS = [
    "",
    "Sunset over the bay with friends",
    "new drop this weekend, link in bio",
    "FREE SPINS and a casino bonus at https://example.test",
    "i will k1ll you if you come back",
    "ghost gun, no serial, dm me",
    "plug on telegram, molly and percs",
    "they are vermin and should go back to your country",
    "Matchday! Who else is watching the final tonight? #football #weekend",
    "A long caption " + "with many ordinary words " * 12,
]


def make_inputs(policy: CompiledPolicy, count: int, seed: int = 1) -> list[dict[str, object]]:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        rows.append(
            {
                "scores": {c: round(rng.random() ** 3, 6) for c in policy.categories},
                "post_id": f"p{i}",
                "author_id": f"a{i % 500}",
                "caption": rng.choice(CAPTIONS),
                "lang": rng.choice(["en", "de", "fr", ""]),
                "has_image": True,
                "metadata": rng.choice([{}, {"source": "api"}, {"audience": "minors"}]),
                "author": AuthorCounters(
                    posts_last_hour=rng.choice([0, 1, 3, 150]),
                    blocks_last_day=rng.choice([0, 0, 4]),
                    strikes=rng.choice([0, 0, 2]),
                ),
                "hash_matches": {"known_bad_pdq": 4} if rng.random() < 0.01 else {},
            }
        )
    return rows


def time_engine(decide: object, rows: list[dict[str, object]], now: float) -> float:
    """Posts per second, building each PolicyInput inside the timed loop."""
    call = decide
    started = time.perf_counter()
    for row in rows:
        call(PolicyInput(**row), now)  # type: ignore[arg-type,operator]
    return len(rows) / (time.perf_counter() - started)


def bench_engine(args: argparse.Namespace) -> None:
    policy = load_policy(args.policy)
    now = 1_780_000_000.0
    rows = make_inputs(policy, args.posts)
    time_engine(policy.decide, rows[:2000], now)  # warm up
    ours = max(time_engine(policy.decide, rows, now) for _ in range(args.repeat))
    sample = rows[: args.baseline_posts]
    table: list[tuple[str, float, int, str]] = [("compiled (this engine)", ours, len(rows), "")]
    for runner in ("interpreted", "compiled"):
        baseline = CelpyPolicy(policy, runner)
        same = sum(
            policy.decide(PolicyInput(**row), now)  # type: ignore[arg-type]
            == baseline.decide(PolicyInput(**row), now)  # type: ignore[arg-type]
            for row in sample
        )
        rate = time_engine(baseline.decide, sample, now)
        table.append((f"cel-python {runner}Runner", rate, len(sample), f"{same}/{len(sample)}"))
    rules = len(policy.rules)
    print(
        f"policy {policy.qualified_version}: {rules} rules evaluated per post "
        f"(+{len(policy.disabled)} disabled); python {sys.version.split()[0]}, "
        f"pid {os.getpid()} on one core"
    )
    print(
        f"{'evaluator':<32}{'posts/s':>10}{'rules/s':>12}{'posts':>8}{'x interpreted':>15}"
        f"{'same decisions':>16}"
    )
    interpreted = table[1][1]
    for name, rate, count, agreed in table:
        print(
            f"{name:<32}{rate:>10,.0f}{rate * rules:>12,.0f}{count:>8}"
            f"{rate / interpreted:>14.1f}x{agreed:>16}"
        )
    target = "meets" if ours >= 20_000 else "MISSES"
    print(
        f"compiled engine {target} the 20,000 posts/s target "
        f"({ours / table[2][1]:.0f}x cel-python's CompiledRunner)"
    )


def bench_bank(size: int, queries: int) -> None:
    import numpy as np

    from moderator.policy.banks import PdqIndex

    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 256, (size, 32), dtype=np.uint8)
    started = time.perf_counter()
    index = PdqIndex(hashes)
    built = time.perf_counter() - started

    def near(i: int) -> bytes:
        bits = np.unpackbits(hashes[i]).copy()
        bits[rng.choice(256, 20, replace=False)] ^= 1
        return np.packbits(bits).tobytes()

    hits = [near(int(i)) for i in rng.integers(0, size, queries)]
    misses = [rng.integers(0, 256, 32, dtype=np.uint8).tobytes() for _ in range(queries)]
    started = time.perf_counter()
    found = sum(index.nearest(q, 31) is not None for q in hits)
    hit_us = (time.perf_counter() - started) / queries * 1e6
    started = time.perf_counter()
    false = sum(index.nearest(q, 31) is not None for q in misses)
    miss_us = (time.perf_counter() - started) / queries * 1e6
    # A threshold over 47 takes PdqIndex's full popcount scan (no chunk-table probes).
    started = time.perf_counter()
    for q in misses[:10]:
        index.nearest(q, 256)
    brute_us = (time.perf_counter() - started) / 10 * 1e6
    print(f"PDQ bank of {size:,} hashes: index built in {built:.1f} s; threshold 31:")
    print(
        f"  near-duplicate query {hit_us:,.0f} us ({found}/{queries} found), "
        f"unrelated query {miss_us:,.0f} us ({false} false matches), "
        f"full popcount scan {brute_us:,.0f} us ({brute_us / miss_us:.0f}x slower)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--policy", type=Path, default=DEFAULT_POLICY)
    parser.add_argument("--posts", type=int, default=50_000)
    parser.add_argument("--baseline-posts", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bank", type=int, default=0, help="Also time a PDQ bank of N hashes.")
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    logging.getLogger("celpy").setLevel(logging.CRITICAL)  # its CompiledRunner logs its bugs
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    bench_engine(args)
    if args.bank:
        bench_bank(args.bank, args.queries)


if __name__ == "__main__":
    main()
