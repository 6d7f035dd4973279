"""`moderator dlq replay`: dead letters back to the posts topic after a fix.

docs/reliability.md, "Replaying dead letters".
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from moderator.config import Settings, load_settings
from moderator.errors import ModeratorError, ReasonCode
from moderator.tables import print_table

if TYPE_CHECKING:  # the Kafka client library loads only when the command runs
    from moderator.io.replay import ReplaySummary

dlq_app = typer.Typer(no_args_is_help=True, help="The dead-letter topic: replay after a fix.")
console = Console()


@dlq_app.command("replay")
def replay_command(
    reason: Annotated[
        list[str] | None,
        typer.Option(help="Replay records dead-lettered for this reason (repeatable)."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Only records dead-lettered since: RFC 3339 time, or 30m, 2h, 7d."),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Publish at most N records.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count by reason; publish nothing.")
    ] = False,
    to: Annotated[
        str | None,
        typer.Option(help="Publish here instead of each record's source topic (header)."),
    ] = None,
    topic: Annotated[
        str | None,
        typer.Option(
            "--dlq-topic",
            help="Dead-letter topic to read (default kafka.dlq_topic; e.g. verdicts.dlq_topic).",
        ),
    ] = None,
    no_guard: Annotated[
        bool,
        typer.Option(
            "--no-guard",
            help="Replay without Redis' once-only guard (a rerun publishes the records again).",
        ),
    ] = False,
    guard_days: Annotated[
        float, typer.Option(min=0.01, help="How long Redis remembers a replayed record.")
    ] = 30.0,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="YAML settings file; MODERATOR_* variables override."),
    ] = None,
) -> None:
    """Re-publish dead-lettered records (original bytes and key) to the topic they came from.

    Reads the dead-letter topic from the beginning with a consumer of its own, selects records
    by reason (and --since), and publishes each once: a Redis key per dead-letter record
    guards against a second replay. --dry-run counts by reason and publishes nothing."""
    reasons = frozenset(reason or ())
    valid = {code.value for code in ReasonCode}
    unknown = sorted(reasons - valid)
    try:
        if unknown:
            raise ModeratorError(
                f"--reason {', '.join(unknown)}: not a reason code; one of "
                + ", ".join(sorted(valid))
            )
        if not reasons and not dry_run:
            raise ModeratorError("give --reason (repeatable); --dry-run alone counts every reason")
        settings = load_settings(config)
        summary = _run(settings, reasons, since, limit, dry_run, to, topic, no_guard, guard_days)
    except ModeratorError as exc:
        # Plain text (a message may hold brackets), unwrapped: a file:line stays whole.
        console.print(Text(str(exc), style="red"), soft_wrap=True)
        raise typer.Exit(2) from exc
    _print_summary(summary, dry_run)
    if sum(summary.failed.values()):
        raise typer.Exit(1)


def _run(
    settings: Settings,
    reasons: frozenset[str],
    since: str | None,
    limit: int | None,
    dry_run: bool,
    to: str | None,
    topic: str | None,
    no_guard: bool,
    guard_days: float,
) -> ReplaySummary:
    from moderator.cache.client import redis_client
    from moderator.io.kafka import create_consumer, create_producer
    from moderator.io.replay import RedisReplayGuard, ReplayOptions, parse_since, replay

    options = ReplayOptions(
        reasons=reasons,
        since=parse_since(since) if since else None,
        limit=limit,
        dry_run=dry_run,
        to_topic=to,
        dlq_topic=topic,
    )
    guard = None
    redis = settings.redis
    if redis.url is not None and not no_guard:
        # The worker's socket timeout is tuned for its hot path; a command can wait longer.
        client = redis_client(
            redis.url.get_secret_value(), max(redis.socket_timeout_s, 5.0), redis.ssl_ca_certs
        )
        guard = RedisReplayGuard(client, done_ttl_s=int(guard_days * 86_400))
    elif not no_guard and not dry_run:
        raise ModeratorError(
            "redis.url is not set: the once-only guard needs Redis (MODERATOR_REDIS__URL); "
            "--no-guard replays without it"
        )
    consumer = create_consumer(settings.kafka, group_id=None, max_poll_records=500)
    producer = None if dry_run else create_producer(settings.kafka)
    try:
        return replay(settings, options, consumer, producer, guard)
    finally:
        consumer.close()
        if producer is not None:
            producer.close()


def _print_summary(summary: ReplaySummary, dry_run: bool) -> None:
    done = "would replay" if dry_run else "replayed"
    table = Table(
        "reason",
        "dead letters",
        "selected",
        done,
        "already replayed",
        "failed",
        title=f"{summary.dlq_topic}: {summary.scanned} records read"
        + (" (dry run: nothing published)" if dry_run else ""),
    )
    for reason, count in sorted(summary.by_reason.items()):
        table.add_row(
            reason,
            str(count),
            str(summary.selected[reason]),
            str(summary.replayed[reason]),
            str(summary.skipped[reason]),
            str(summary.failed[reason]),
        )
    print_table(console, table)
    total = sum(summary.replayed.values())
    targets = ", ".join(f"{topic} ({n})" for topic, n in sorted(summary.targets.items()))
    console.print(
        f"{done}: {total}{' to ' + targets if targets else ''}; "
        f"skipped (already replayed): {sum(summary.skipped.values())}; "
        f"failed: {sum(summary.failed.values())}"
        + (f"; older than --since: {summary.too_old}" if summary.too_old else "")
        + ("; --limit reached" if summary.limit_reached else ""),
        highlight=False,
    )
