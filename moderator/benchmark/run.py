"""`moderator bench`: every figure is a ratio against a baseline measured in the same run."""

from __future__ import annotations

import platform
import re
import shutil
import time
from pathlib import Path
from typing import Any

import orjson
import psutil
import yaml
from rich.console import Console
from rich.table import Table

from moderator.benchmark.ingest import run_ingest
from moderator.benchmark.pipeline import added_latency_ms, run_backlog, run_open_loop
from moderator.benchmark.raw_loop import RawLoopResult, mean_result, run_raw_loop
from moderator.config import Settings
from moderator.demo.collect import Collected
from moderator.demo.samples import SampleRecord, sample_stream
from moderator.ingest import normalise_caption
from moderator.local.stack import local_ray, local_services
from moderator.signals import SignalSettings, build_signals
from moderator.tables import print_table


def machine() -> str:
    memory_gib = psutil.virtual_memory().total / 2**30
    return f"{platform.machine()}, {psutil.cpu_count()} cores, {memory_gib:.0f} GiB RAM"


def encodes_per_post(samples: list[SampleRecord]) -> tuple[float, float]:
    """Distinct images and distinct non-blank normalised captions per valid post: what the
    pipeline encodes when every repeat is served by the cache or by in-batch dedupe."""
    posts = [orjson.loads(s.value) for s in samples if s.valid]
    images = {p["image_b64"] for p in posts if p.get("image_b64")}
    captions = {c for p in posts if (c := normalise_caption(p.get("caption", "")))}
    return len(images) / len(posts), len(captions) / len(posts)


def predicted_cost_ms(raw: RawLoopResult, samples: list[SampleRecord]) -> float:
    """Per-post cost predicted from the raw loop's measured per-item encoder costs and rest."""
    images, captions = encodes_per_post(samples)
    return (
        images * raw.image_encode_ms_per_image
        + captions * raw.text_encode_ms_per_caption
        + raw.rest_ms_per_post
    )


def pool_signals(signals: SignalSettings) -> list[str]:
    """The pool signals these settings switch on."""
    return [signal.name for signal in build_signals(signals, "pool")]


def signals_share(collected: Collected) -> float:
    """Mean share of a batch's time from its first decode to the model's answer spent in the
    pool signals, over the run's decisions (each carries its batch's timings_ms)."""
    shares = []
    for decision in collected.decisions.values():
        t = decision.get("timings_ms", {})
        total = sum(t.get(part, 0.0) for part in ("decode", "signals", "cache", "inference"))
        if total > 0:
            shares.append(t.get("signals", 0.0) / total)
    return sum(shares) / len(shares) if shares else 0.0


def without_pool_signals(settings: Settings, out: Path) -> Settings:
    """Settings with OCR and image safety off: the raw loop runs the classifier only, so the
    pipeline it is compared with must too. The policy loses the categories those signals
    score, and its rules on them, as docs/image_safety.md tells a user to do."""
    signals = settings.signals
    scored_by_signals = {
        category for signal in build_signals(signals, "pool") for category in signal.categories
    }
    off = signals.model_copy(
        update={
            "ocr": signals.ocr.model_copy(update={"enabled": False}),
            "image_safety": signals.image_safety.model_copy(update={"enabled": False}),
        }
    )
    policy = policy_without(settings.policy_path, scored_by_signals, out / "policy")
    return settings.model_copy(update={"signals": off, "policy_path": policy})


def policy_without(policy_path: Path, categories: set[str], directory: Path) -> Path:
    """A copy of the policy (with the files beside it, which it may name relatively) without
    `categories` and the rules that read or label them."""
    shutil.copytree(policy_path.parent, directory, dirs_exist_ok=True)
    document = yaml.safe_load(policy_path.read_text(encoding="utf-8"))
    document["categories"] = [c for c in document["categories"] if c not in categories]
    names = re.compile(rf"\b({'|'.join(map(re.escape, sorted(categories)))})\b")
    document["rules"] = [
        rule
        for rule in document.get("rules", [])
        if not categories
        or not names.search(f"{rule.get('when', '')} {' '.join(rule.get('labels', []))}")
    ]
    target = directory / policy_path.name
    target.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return target


def run_bench(
    settings: Settings,
    posts: int,
    ingest_posts: int,
    ingest_processes: int,
    out: Path,
    console: Console,
) -> dict[str, Any]:
    """Figures 1-4 compare like with like: the pipeline runs with the pool signals off, as the
    raw loop has none. One more run, with the signals as configured, prices them."""
    with_signals = settings
    settings = without_pool_signals(settings, out)
    serving = settings.serving
    batch = settings.worker.batch_size

    def images(seed: int, run_id: str, repost_share: float) -> list[SampleRecord]:
        return sample_stream(
            posts,
            seed=seed,
            image_share=1.0,
            repost_share=repost_share,
            harmful_share=0.1,
            malformed_share=0.0,
            run_id=run_id,
            exact_reposts=True,
        )

    # Two unique streams from the same generator: the second is new to Redis and to the
    # replica's memory, so it measures the same work as the first.
    unique, unique_again = images(21, "bench-unique", 0.0), images(26, "bench-unique-2", 0.0)
    reposts = images(22, "bench-reposts", 0.5)
    # A quarter as many: with OCR on, a CPU worker reads a few images per second.
    signal_posts = images(27, "bench-signals", 0.0)[: max(posts // 4, 2 * batch)]
    captions = sample_stream(
        ingest_posts, seed=23, image_share=0.0, malformed_share=0.0, run_id="bench-ingest"
    )
    results: dict[str, Any] = {
        "machine": machine(),
        "posts": posts,
        "batch_size": batch,
        # Which replicas the figures are of (device, precision, batching, replicas).
        "classifier": serving.classifier.model_dump(mode="json"),
    }

    # Baselines are bracketed: raw loop first and last, unique pipeline before and after the
    # repost run; each ratio uses the means, so a machine that drifts during the run (a
    # shared VM) moves both sides alike. Both values of each pair are reported.
    signals_on = ", ".join(pool_signals(with_signals.signals)) or "none on"
    console.print("[bold]1/8[/] raw loop (baseline: same model, same batches, no Kafka/Ray)")
    raw_first = run_raw_loop(unique, batch, serving.classifier)
    with local_services(settings) as services:
        with local_ray(services) as stack:
            logs = out / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            console.print("[bold]2/8[/] pipeline, backlog of unique images")
            pipeline_first = run_backlog(stack, unique, logs / "worker-unique.log")
            console.print("[bold]3/8[/] pipeline, backlog with 50% exact reposts")
            repost_run = run_backlog(stack, reposts, logs / "worker-reposts.log")
            console.print("[bold]4/8[/] pipeline, backlog of unique images again (bracket)")
            pipeline_last = run_backlog(stack, unique_again, logs / "worker-unique-2.log")
            pipeline_rate = (pipeline_first.posts_per_s + pipeline_last.posts_per_s) / 2
            rate = 0.5 * pipeline_rate
            console.print(f"[bold]5/8[/] open loop at 50% of max ({rate:.1f} posts/s)")
            warmup = sample_stream(
                2 * batch, seed=24, image_share=1.0, malformed_share=0.0, run_id="bench-warmup"
            )
            load = sample_stream(
                max(posts // 2, 4 * batch),
                seed=25,
                image_share=1.0,
                repost_share=0.0,
                malformed_share=0.0,
                run_id="bench-load",
            )
            open_loop = run_open_loop(stack, warmup, load, rate, logs / "worker-open-loop.log")
            console.print(
                f"[bold]6/8[/] pipeline with the pool signals as configured ({signals_on}), "
                f"{len(signal_posts)} unique images"
            )
            signals_run = run_backlog(
                stack.model_copy(
                    update={
                        "signals": with_signals.signals,
                        "policy_path": with_signals.policy_path,
                    }
                ),
                signal_posts,
                logs / "worker-signals.log",
            )
        # Without Ray: a no-op model needs no Serve (in production Ray runs on other nodes),
        # and with its idle processes up two worker processes did 10.0k posts/s on 2 cores
        # against 13.7k-16.0k without (2026-11-23).
        counts = sorted({1, ingest_processes})
        console.print(
            f"[bold]7/8[/] ingest with a no-op model (caption-only posts), "
            f"{' and '.join(map(str, counts))} worker processes"
        )
        ingest = [run_ingest(services, captions, n) for n in counts]
    console.print("[bold]8/8[/] raw loop again (bracket)")
    raw_last = run_raw_loop(unique, batch, serving.classifier)
    raw = mean_result(raw_first, raw_last)

    predicted = predicted_cost_ms(raw, unique) / predicted_cost_ms(raw, reposts)
    measured = repost_run.posts_per_s / pipeline_rate
    results |= {
        "raw_loop": raw.__dict__,
        "raw_loop_runs_posts_per_s": [raw_first.posts_per_s, raw_last.posts_per_s],
        "pipeline_posts_per_s": pipeline_rate,
        "pipeline_runs_posts_per_s": [pipeline_first.posts_per_s, pipeline_last.posts_per_s],
        "pipeline_vs_raw": pipeline_rate / raw.posts_per_s,
        "reposts_posts_per_s": repost_run.posts_per_s,
        "repost_speedup_measured": measured,
        "repost_speedup_predicted": predicted,
        # (images, captions) the pipeline must encode per post in each stream
        "encodes_per_post": {
            "unique": encodes_per_post(unique),
            "reposts": encodes_per_post(reposts),
        },
        "repost_speedup_ratio": measured / predicted,
        "open_loop_rate": rate,
        "pool_signals": pool_signals(with_signals.signals),
        "signals_posts_per_s": signals_run.posts_per_s,
        "signals_vs_pipeline": signals_run.posts_per_s / pipeline_rate,
        "signals_share_of_batch_time": signals_share(signals_run.collected),
        "added_latency_ms": added_latency_ms(open_loop),
        "ingest_noop": [r.__dict__ for r in ingest],
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    render(console, results)
    return results


def render(console: Console, r: dict[str, Any]) -> None:
    table = Table(
        title=f"moderator bench · {r['machine']} · {r['posts']} posts · batch {r['batch_size']}"
    )
    for column in ("figure", "measured", "baseline", "goal"):
        table.add_column(column)
    raw_runs = " / ".join(f"{v:.1f}" for v in r["raw_loop_runs_posts_per_s"])
    pipeline_runs = " / ".join(f"{v:.1f}" for v in r["pipeline_runs_posts_per_s"])
    table.add_row(
        "pipeline ÷ raw loop",
        f"{r['pipeline_vs_raw']:.2f}",
        f"means of raw {raw_runs} and pipeline {pipeline_runs} posts/s",
        "≥ 0.90",
    )
    lat = r["added_latency_ms"]
    table.add_row(
        "added latency p50 at 50% load",
        f"{lat['p50']:.1f} ms",
        f"over model compute, {r['open_loop_rate']:.1f} posts/s",
        "≤ 5 ms",
    )
    table.add_row("added latency p99 at 50% load", f"{lat['p99']:.1f} ms", "", "≤ 20 ms")
    for part, label in (
        ("serve_wait", "Serve call minus compute"),
        ("worker", "decode + cache + policy"),
        ("loop", "model answer → worker loop"),
        ("kafka", "Kafka hops"),
    ):
        figures = lat["parts"][part]
        table.add_row(
            f"  of which {label}",
            f"{figures['p50']:.1f} / {figures['p99']:.1f} ms",
            "p50 / p99",
            "",
        )
    table.add_row(
        "repost speed-up ÷ predicted",
        f"{r['repost_speedup_ratio']:.2f}",
        f"measured {r['repost_speedup_measured']:.2f}x, "
        f"predicted {r['repost_speedup_predicted']:.2f}x",
        "≥ 0.90",
    )
    table.add_row(
        f"pipeline with {', '.join(r['pool_signals']) or 'no pool signals'} ÷ without",
        f"{r['signals_vs_pipeline']:.2f}",
        f"{r['signals_posts_per_s']:.1f} vs {r['pipeline_posts_per_s']:.1f} posts/s; "
        f"signals {r['signals_share_of_batch_time']:.0%} of batch time",
        "—",
    )
    single = r["ingest_noop"][0]["posts_per_s"]
    for run in r["ingest_noop"]:
        n = run["processes"]
        scaling = f", {run['posts_per_s'] / single:.2f}x one process" if n > 1 else ""
        table.add_row(
            f"ingest, no-op model, {n} worker process{'es' if n > 1 else ''}",
            f"{run['posts_per_s']:,.0f} posts/s",
            f"caption-only posts, {run['window_s']:.1f} s window{scaling}",
            "≥ 20,000",
        )
    print_table(console, table)
