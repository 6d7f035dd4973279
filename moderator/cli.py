"""The `moderator` command line."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from moderator.calibrate.cli import calibrate_command
from moderator.config import Settings, load_settings
from moderator.dlq_cli import dlq_app
from moderator.errors import ModeratorError
from moderator.policy.cli import bank_app, policy_app
from moderator.training.cli import model_app
from moderator.training.neighbours_cli import neighbours_app

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
schema_app = typer.Typer(no_args_is_help=True, help="Wire contracts (JSON Schema).")
app.add_typer(schema_app, name="schema")
app.add_typer(policy_app, name="policy")
app.add_typer(bank_app, name="bank")
# `moderator train` and `moderator eval` (torch is imported only when they run).
app.registered_commands += model_app.registered_commands
app.command("calibrate")(calibrate_command)
app.add_typer(dlq_app, name="dlq")
app.add_typer(neighbours_app, name="neighbours")
console = Console()

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML settings file; MODERATOR_* variables override it."),
]


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ModeratorError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@app.command()
def demo(
    config: ConfigOption = None,
    posts: Annotated[int, typer.Option(help="Records in the sample stream.")] = 600,
    rate: Annotated[
        float, typer.Option(help="Posts/s to produce at; 0 = as fast as possible.")
    ] = 0.0,
    out: Annotated[Path, typer.Option(help="Where decisions.jsonl and worker.log go.")] = Path(
        "demo-output"
    ),
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every decision.")] = 600.0,
    verbose: bool = False,
) -> None:
    """Run the whole pipeline locally on a sample stream and print a summary."""
    from moderator.demo.run import run_demo
    from moderator.demo.summary import render_summary

    _logging(verbose)
    settings = _settings(config)
    try:
        figures, collected = run_demo(settings, posts, out, rate, timeout, console)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: the stack was shut down[/]")
        raise typer.Exit(130) from None
    except ModeratorError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    render_summary(console, figures, collected)
    console.print(f"decisions written to {out / 'decisions.jsonl'}")
    if len(collected.decisions) < figures.expected_valid:
        console.print(
            f"[red]{figures.expected_valid - len(collected.decisions)} posts undecided[/]"
        )
        raise typer.Exit(1)


@app.command()
def bench(
    config: ConfigOption = None,
    posts: Annotated[int, typer.Option(help="Posts per pipeline run.")] = 1536,
    ingest_posts: Annotated[int, typer.Option(help="Posts for each no-op ingest run.")] = 100_000,
    ingest_processes: Annotated[
        int,
        typer.Option(
            min=0, help="Worker processes for the second ingest run (default: CPU cores)."
        ),
    ] = 0,
    out: Annotated[Path, typer.Option(help="Where bench.json and logs go.")] = Path(
        "bench-results"
    ),
) -> None:
    """Measure the pipeline against a raw model loop, repost speed-up, latency and ingest."""
    from moderator.benchmark.run import run_bench

    _logging(False)
    processes = ingest_processes or os.cpu_count() or 1
    run_bench(_settings(config), posts, ingest_posts, processes, out, console)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def worker(ctx: typer.Context) -> None:
    """Run one moderation worker against configured Kafka, Redis and Ray Serve.

    This is `python -m workers`: its arguments (--config FILE; --help) pass through
    untouched, so the worker's own parser is the only one.
    """
    # The worker is the app, not the library: start it by module path, in this process
    # (the same PID, so it gets SIGTERM itself, as PID 1 of the worker's container).
    os.execv(sys.executable, [sys.executable, "-m", "workers", *ctx.args])


@app.command()
def serve(config: ConfigOption = None) -> None:
    """Deploy the Classifier app to the Ray cluster in serving.ray_address and keep it running."""
    import time

    from moderator.serving.runner import connect_ray, deploy_classifier

    _logging(True)
    settings = _settings(config)
    try:
        connect_ray(settings.serving)
    except ModeratorError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    deploy_classifier(settings.serving)
    console.print(f"Serve app {settings.serving.app_name!r} deployed; Ctrl-C to leave it running")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


@app.command()
def verdicts(config: ConfigOption = None) -> None:
    """Consume reviewers' verdicts: strikes, corrected decisions for appeals, training rows.

    At-least-once against configured Kafka and Redis, until SIGTERM or Ctrl-C (docs/reviewers.md).
    """
    import threading

    from moderator.verdicts.consumer import run_verdicts

    _logging(True)
    settings = _settings(config)
    try:
        stats = run_verdicts(settings, threading.Event())
    except ModeratorError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    console.print(
        f"verdicts applied {stats.applied}, duplicates skipped {stats.duplicates}, "
        f"dead-lettered {stats.dead_lettered}, corrections {stats.corrections}"
    )


@schema_app.command("export")
def schema_export(
    directory: Annotated[Path, typer.Argument(help="Output directory.")] = Path("schemas"),
) -> None:
    """Write the JSON Schema files of the post, decision and dead-letter contracts."""
    from moderator.schema.export import export_schemas

    for path in export_schemas(directory):
        console.print(f"wrote {path}")


def main() -> None:
    try:
        app()
    except ModeratorError as exc:
        console.print(f"[red]{exc}[/]")
        sys.exit(2)
