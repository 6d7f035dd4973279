"""`moderator calibrate`: thresholds from reviewers' verdicts (docs/calibration.md)."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from moderator.calibrate.join import CalibrationError
from moderator.schema.decision import Action
from moderator.tables import print_table

if TYPE_CHECKING:
    from moderator.calibrate.curves import Point
    from moderator.calibrate.run import CalibrationResult, CategoryResult

console = Console()
# Below this many bytes of input, reading is quick and a progress bar is only noise.
PROGRESS_BYTES = 20 * 1024 * 1024


def calibrate_command(
    verdicts: Annotated[
        Path, typer.Option(help="Reviewers' verdicts, JSONL (one Verdict a line).")
    ],
    decisions: Annotated[
        Path, typer.Option(help="Logged decisions, JSONL (one Decision a line, as on the topic).")
    ],
    policy: Annotated[Path, typer.Option(help="The policy whose thresholds to calibrate.")],
    target_precision: Annotated[
        float, typer.Option(help="Precision the new threshold must reach on reviewed posts.")
    ] = 0.9,
    min_support: Annotated[
        int,
        typer.Option(help="Reviewed posts needed at or above a threshold to recommend it."),
    ] = 30,
    category: Annotated[
        list[str] | None, typer.Option(help="Calibrate this category (repeatable); default all.")
    ] = None,
    action: Annotated[
        Action | None,
        typer.Option(help="Tune the rules with this action; default each category's most severe."),
    ] = None,
    resolution: Annotated[
        float, typer.Option(min=0.001, max=0.1, help="Step of the thresholds recommended.")
    ] = 0.01,
    policy_out: Annotated[
        Path | None,
        typer.Option(help="New policy file; default <policy>.calibrated.yaml beside it."),
    ] = None,
    new_version: Annotated[
        str | None, typer.Option(help="The new policy's version; default <version>-calibrated.")
    ] = None,
    out: Annotated[
        Path, typer.Option(help="calibration.json, policy.diff and one PNG per category.")
    ] = Path("calibration"),
    run_backtest: Annotated[
        bool,
        typer.Option(
            "--backtest/--no-backtest",
            help="Replay the logged decisions through both policies (two passes over them).",
        ),
    ] = True,
    show_backtest: Annotated[
        bool, typer.Option(help="Print the backtest's rule and label tables too.")
    ] = False,
) -> None:
    """Per category: precision and recall against threshold from reviewers' verdicts, the lowest
    threshold reaching the target precision, a policy with those thresholds and its backtest."""
    from moderator.calibrate.report import write_report
    from moderator.calibrate.run import CalibrationOptions, calibrate

    options = CalibrationOptions(
        verdicts=verdicts,
        decisions=decisions,
        policy=policy,
        target_precision=target_precision,
        min_support=min_support,
        categories=tuple(category or ()),
        action=action,
        resolution=resolution,
        policy_out=policy_out,
        new_version=new_version,
        backtest=run_backtest,
    )
    try:
        with ExitStack() as stack:
            advance = None
            total = sum(p.stat().st_size for p in (verdicts, decisions) if p.is_file())
            if total >= PROGRESS_BYTES:
                bar = stack.enter_context(
                    Progress(TextColumn("reading"), BarColumn(), DownloadColumn(), console=console)
                )
                task = bar.add_task("reading", total=total)

                def advance(n: int) -> None:
                    bar.advance(task, n)

            result = calibrate(options, advance)
    except CalibrationError as exc:
        # Plain text (a message may hold brackets), unwrapped: a file:line stays whole.
        console.print(Text(str(exc), style="red"), soft_wrap=True)
        raise typer.Exit(2) from exc
    _print_result(result, show_backtest)
    for path in write_report(result, out):
        console.print(f"wrote {path}", highlight=False)


def _print_result(result: CalibrationResult, show_backtest: bool) -> None:
    joined = result.joined
    console.print(
        f"{len(joined.pairs)} reviewed decisions: {joined.verdicts_read} verdicts joined to "
        f"{joined.decisions_read} decisions; {joined.unmatched_verdicts} verdicts without their "
        f"decision, {joined.duplicate_verdicts} duplicate, {joined.superseded_verdicts} "
        f"superseded by a later verdict",
        highlight=False,
    )
    if joined.unmatched_examples:
        console.print(
            "  unmatched (post / model / policy): " + "; ".join(joined.unmatched_examples),
            highlight=False,
        )
    if result.unscored_categories:
        console.print(
            f"not scored by any decision: {', '.join(result.unscored_categories)}",
            highlight=False,
        )
    for note in result.notes:
        console.print(f"[yellow]{note}[/]", highlight=False)
    options = result.options
    table = Table(
        "category",
        "judged",
        "+/-",
        "rules",
        "now: precision / recall (n)",
        "new",
        "new: precision / recall (n)",
        title=f"target precision {options.target_precision:g}, at least "
        f"{options.min_support} reviewed posts at or above the threshold",
    )
    for item in result.categories:
        curve, point = item.curve, item.curve.recommendation.point
        now = "; ".join(
            f"{rule.rule_id} {rule.value:g}: {_figures(item.current[rule.rule_id])}"
            for rule in item.tuned
        )
        table.add_row(
            curve.category,
            str(len(curve.scores)),
            f"{curve.positives}/{curve.negatives}",
            ", ".join(rule.rule_id for rule in item.tuned) or "-",
            now or "-",
            _new_column(item),
            _figures(point) if point else curve.recommendation.reason,
        )
    print_table(console, table)
    for item in result.categories:
        for note in item.notes:
            console.print(f"[yellow]{item.curve.category}:[/] {note}", highlight=False)
        if item.also_reads and item.tuned:
            console.print(
                f"{item.curve.category}: also read, in larger expressions (not rewritten), by "
                f"{', '.join(item.also_reads)}",
                highlight=False,
            )
    if result.new_policy is None:
        console.print("no threshold changes: no new policy written")
        return
    console.print(result.diff, highlight=False, markup=False, end="", soft_wrap=True)
    console.print(f"new policy written to {result.new_policy}", highlight=False)
    if result.relative_files_note:
        console.print(f"[yellow]{result.relative_files_note}[/]", highlight=False)
    _print_backtests(result, show_backtest)


def _new_column(item: CategoryResult) -> str:
    if item.new_value is None:
        return "-"
    if item.tuned and len(item.kept) == len(item.tuned):
        return f"kept (= {item.new_value})"
    return item.new_value


def _figures(point: Point) -> str:
    if point.precision is None:
        return "no reviewed posts"
    recall = f"{point.recall:.3f}" if point.recall is not None else "-"
    return f"{point.precision:.3f} / {recall} ({point.support})"


def _print_backtests(result: CalibrationResult, show_backtest: bool) -> None:
    from moderator.policy.cli import print_backtest

    baseline, calibrated = result.baseline, result.calibrated
    if baseline is None or calibrated is None:
        return
    table = Table(
        "action",
        "logged",
        f"{baseline.policy} (now)",
        f"{calibrated.policy} (new)",
        "change",
        title=f"backtest over {calibrated.decisions} logged decisions",
    )
    for action in Action:
        before, after = baseline.new_actions[action], calibrated.new_actions[action]
        table.add_row(
            action.value,
            str(baseline.old_actions[action]),
            str(before),
            str(after),
            f"{after - before:+d}",
        )
    print_table(console, table)
    if show_backtest:
        print_backtest(calibrated, 20)
