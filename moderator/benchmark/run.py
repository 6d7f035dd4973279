"""`moderator bench`: every figure is a ratio against a baseline measured in the same run."""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

import orjson
import psutil
from rich.console import Console
from rich.table import Table

from moderator.benchmark.pipeline import added_latency_ms, run_backlog, run_ingest, run_open_loop
from moderator.benchmark.raw_loop import RawLoopResult, run_raw_loop
from moderator.cache import normalise_caption
from moderator.config import Settings
from moderator.demo.samples import SampleRecord, sample_stream
from moderator.demo.stack import local_ray, local_services


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


def run_bench(
    settings: Settings, posts: int, ingest_posts: int, out: Path, console: Console
) -> dict[str, Any]:
    serving = settings.serving
    batch = settings.worker.batch_size
    unique = sample_stream(
        posts,
        seed=21,
        image_share=1.0,
        repost_share=0.0,
        harmful_share=0.1,
        malformed_share=0.0,
        run_id="bench-unique",
        exact_reposts=True,
    )
    reposts = sample_stream(
        posts,
        seed=22,
        image_share=1.0,
        repost_share=0.5,
        harmful_share=0.1,
        malformed_share=0.0,
        run_id="bench-reposts",
        exact_reposts=True,
    )
    captions = sample_stream(
        ingest_posts, seed=23, image_share=0.0, malformed_share=0.0, run_id="bench-ingest"
    )
    results: dict[str, Any] = {"machine": machine(), "posts": posts, "batch_size": batch}

    console.print("[bold]1/5[/] raw loop (baseline: same model, same batches, no Kafka/Ray)")
    raw = run_raw_loop(
        unique,
        batch,
        serving.torch_threads,
        str(serving.checkpoint) if serving.checkpoint else None,
    )
    results["raw_loop"] = raw.__dict__

    with local_services(settings) as services, local_ray(services) as stack:
        logs = out / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        console.print("[bold]2/5[/] pipeline, backlog of unique images")
        pipeline = run_backlog(stack, unique, logs / "worker-unique.log")
        console.print("[bold]3/5[/] pipeline, backlog with 50% exact reposts")
        repost_run = run_backlog(stack, reposts, logs / "worker-reposts.log")
        rate = 0.5 * pipeline.posts_per_s
        console.print(f"[bold]4/5[/] open loop at 50% of max ({rate:.1f} posts/s)")
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
        console.print("[bold]5/5[/] ingest with a no-op model (caption-only posts)")
        ingest = run_ingest(stack, captions)

    predicted = predicted_cost_ms(raw, unique) / predicted_cost_ms(raw, reposts)
    measured = repost_run.posts_per_s / pipeline.posts_per_s
    results |= {
        "pipeline_posts_per_s": pipeline.posts_per_s,
        "pipeline_vs_raw": pipeline.posts_per_s / raw.posts_per_s,
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
        "added_latency_ms": added_latency_ms(open_loop),
        "ingest_noop_posts_per_s": ingest,
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
    raw = r["raw_loop"]["posts_per_s"]
    table.add_row(
        "pipeline ÷ raw loop",
        f"{r['pipeline_vs_raw']:.2f}",
        f"raw {raw:.1f} posts/s, pipeline {r['pipeline_posts_per_s']:.1f}",
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
        ("kafka_and_loop", "Kafka hops + worker loop"),
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
        "ingest, no-op model",
        f"{r['ingest_noop_posts_per_s']:,.0f} posts/s",
        "caption-only posts, one worker",
        "≥ 20,000",
    )
    console.print(table)
