"""`moderator demo`: start the stack, stream samples through it, print what happened."""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path

import orjson
import psutil
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from moderator.config import Settings
from moderator.demo.collect import Collected, collect
from moderator.demo.samples import SampleRecord, sample_stream
from moderator.demo.summary import RunFigures
from moderator.io import create_producer
from moderator.local.stack import WorkerProcess, create_topics, local_ray, local_services

logger = logging.getLogger(__name__)


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def produce_samples(
    settings: Settings, samples: list[SampleRecord], console: Console, rate: float = 0.0
) -> None:
    producer = create_producer(settings.kafka)
    interval = 1.0 / rate if rate > 0 else 0.0
    started = time.monotonic()
    try:
        with _progress(console) as progress:
            task = progress.add_task("producing posts", total=len(samples))
            for i, sample in enumerate(samples):
                if interval:
                    time.sleep(max(0.0, started + i * interval - time.monotonic()))
                producer.send(settings.kafka.posts_topic, key=sample.key, value=sample.value)
                progress.advance(task)
            producer.flush(timeout=60)
    finally:
        producer.close()


def stack_rss_mib() -> float:
    """RSS of this process and its children (Ray, broker, Redis, worker)."""
    me = psutil.Process()
    total = 0
    for proc in [me, *me.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


def run_demo(
    settings: Settings,
    count: int,
    out_dir: Path,
    rate: float,
    timeout_s: float,
    console: Console,
) -> tuple[RunFigures, Collected]:
    out_dir.mkdir(parents=True, exist_ok=True)
    run_id = f"demo-{uuid.uuid4().hex[:6]}"
    samples = sample_stream(count, run_id=run_id, meme_share=0.08)
    expected_valid = sum(s.valid for s in samples)
    with local_services(settings) as services, local_ray(services, wait_for_app=False) as stack:
        console.print(
            f"[dim]broker {stack.kafka.bootstrap_servers} · Ray {stack.serving.ray_address}[/]"
        )
        create_topics(stack)
        worker = WorkerProcess(stack, out_dir / "worker.log").start()
        try:
            produce_samples(stack, samples, console, rate)
            with _progress(console) as progress:
                task = progress.add_task("deciding", total=len(samples))
                collected = collect(
                    stack.kafka,
                    expected_valid,
                    len(samples) - expected_valid,
                    timeout_s,
                    on_progress=lambda n: progress.advance(task, n),
                    still_running=worker.alive,
                )
            rss = stack_rss_mib()
        finally:
            code = worker.stop()
            if code not in (0, None):
                console.print(f"[red]worker exited with {code}; see {out_dir / 'worker.log'}[/]")
    last = max(collected.decision_timestamps_ms.values(), default=0) / 1000
    first_sent = min((d["source"]["timestamp_ms"] for d in collected.decisions.values()), default=0)
    figures = RunFigures(
        produced=len(samples),
        expected_valid=expected_valid,
        expected_dead=len(samples) - expected_valid,
        seconds=max(last - first_sent / 1000, 1e-9) if collected.decisions else 0.0,
        first_decision_s=(
            collected.first_decision_at - psutil.Process().create_time()
            if collected.first_decision_at
            else None
        ),
        stack_rss_mib=rss,
    )
    write_decisions(out_dir / "decisions.jsonl", collected)
    return figures, collected


def write_decisions(path: Path, collected: Collected) -> None:
    with path.open("wb") as out:
        for decision in collected.decisions.values():
            out.write(orjson.dumps(decision) + b"\n")
