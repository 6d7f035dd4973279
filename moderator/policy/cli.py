"""Command line for policies and hash banks: typer sub-apps mounted by `moderator`.

moderator policy check FILE                 validate, print a rule summary
moderator policy test FILE CASES            run YAML test cases
moderator policy backtest NEW --decisions D replay logged decisions through NEW
moderator bank import --kind pdq --out F SRC...   build a hash-list file
moderator bank import --semantic NAME --out DIR SRC...   build a semantic bank (docs/retrieval.md)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from moderator.policy.errors import PolicyError
from moderator.tables import print_table

policy_app = typer.Typer(no_args_is_help=True, help="Policy files: check, test, backtest.")
bank_app = typer.Typer(no_args_is_help=True, help="Hash banks (PDQ, MD5, SHA-256 lists).")
console = Console()


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[red]{exc}[/]", highlight=False)
    return typer.Exit(2)


@policy_app.command("check")
def check(
    path: Annotated[Path, typer.Argument(help="Policy YAML file.")],
    categories: Annotated[
        str | None,
        typer.Option(help="Comma-separated categories the model scores, to check against."),
    ] = None,
    show_python: Annotated[bool, typer.Option(help="Print the generated Python.")] = False,
) -> None:
    """Validate a policy file and print its rules."""
    from moderator.policy.loader import load_policy

    try:
        policy = load_policy(path)
        if categories:
            policy.check_categories([c.strip() for c in categories.split(",") if c.strip()])
    except PolicyError as exc:
        raise _fail(exc) from exc
    summary = policy.summary()
    console.print(
        f"[green]ok[/] {policy.qualified_version}: {summary['rules']} rules over "
        f"{len(policy.categories)} categories; term lists {summary['term_lists']}; "
        f"hash banks {summary['hash_banks']}",
        highlight=False,
    )
    table = Table("rule", "mode", "prio", "action", "labels", "reads", "expires")
    now = datetime.now(UTC).timestamp()
    for rule in (*policy.rules, *policy.disabled):
        expires = ""
        if rule.expires_at is not None:
            moment = datetime.fromtimestamp(rule.expires_at, UTC)
            expires = moment.isoformat(timespec="minutes")
            expires += " (expired)" if rule.expires_at <= now else ""
        table.add_row(
            rule.id,
            rule.mode.value,
            str(rule.priority),
            rule.action.value,
            ", ".join(rule.labels),
            ", ".join(sorted(rule.reads)),
            expires,
        )
    print_table(console, table)
    noticed = [rule.id for rule in (*policy.rules, *policy.disabled) if rule.notice]
    if noticed:
        # Placeholders were checked at load; these are the rules an author may hear from.
        console.print(f"notices (placeholders checked): {', '.join(noticed)}", highlight=False)
    if show_python:
        console.print(policy.python_source, highlight=False, markup=False)


@policy_app.command("test")
def test(
    path: Annotated[Path, typer.Argument(help="Policy YAML file.")],
    cases: Annotated[Path, typer.Argument(help="Cases YAML file.")],
) -> None:
    """Run test cases (input → expected action and labels) against a policy."""
    from moderator.policy.cases import load_cases, run_cases
    from moderator.policy.loader import load_policy

    try:
        policy = load_policy(path)
        document = load_cases(cases)
    except PolicyError as exc:
        raise _fail(exc) from exc
    report = run_cases(policy, document)
    for outcome in report.failed:
        console.print(f"[red]FAIL[/] {outcome.case.name}", highlight=False)
        for failure in outcome.failures:
            console.print(f"    {failure}", highlight=False, markup=False)
        console.print(f"    fired: {outcome.result.rules_fired}", highlight=False, markup=False)
    if report.never_fired:
        console.print(f"[yellow]no case fires[/] {', '.join(report.never_fired)}", highlight=False)
    passed = len(report.outcomes) - len(report.failed)
    console.print(f"{policy.qualified_version}: {passed} passed, {len(report.failed)} failed")
    if report.failed:
        raise typer.Exit(1)


@policy_app.command("backtest")
def backtest_command(
    new: Annotated[Path, typer.Argument(help="The policy to try.")],
    decisions: Annotated[
        Path, typer.Option("--decisions", help="Logged decisions, JSONL (one Decision a line).")
    ],
    posts: Annotated[
        Path | None,
        typer.Option(help="The posts, JSONL, joined by post_id: replays caption rules too."),
    ] = None,
    changes: Annotated[
        Path | None, typer.Option(help="Write every changed post here, JSONL.")
    ] = None,
    show: Annotated[int, typer.Option(help="Changed posts to print.")] = 20,
) -> None:
    """Replay logged decisions through a new policy; print what changes, by rule and label."""
    from moderator.policy.backtest import backtest, load_posts, read_jsonl, write_changes
    from moderator.policy.loader import load_policy

    try:
        policy = load_policy(new)
    except PolicyError as exc:
        raise _fail(exc) from exc
    joined = load_posts(posts) if posts else None
    lines = (line for _, line in read_jsonl(decisions))
    report = backtest(policy, lines, joined, keep_changes=max(show, 10_000 if changes else show))
    print_backtest(report, show)
    if changes:
        write_changes(report, changes)
        console.print(f"changed posts written to {changes}")


def print_backtest(report: object, show: int) -> None:
    from moderator.policy.backtest import BacktestReport
    from moderator.schema.decision import Action

    if not isinstance(report, BacktestReport):  # pragma: no cover - typed by the caller
        return
    old = ", ".join(f"{k} ({v})" for k, v in report.old_policies.most_common())
    console.print(
        f"{report.decisions} decisions replayed through {report.policy} "
        f"(logged under {old or '-'}); "
        f"{report.changed_count} change action"
        + (f"; {report.skipped_lines} unreadable lines skipped" if report.skipped_lines else ""),
        highlight=False,
    )
    actions = list(Action)
    matrix = Table("old \\ new", *(a.value for a in actions), title="actions")
    for old_action in actions:
        matrix.add_row(
            old_action.value,
            *(str(report.transitions[(old_action, new)]) for new in actions),
        )
    print_table(console, matrix)
    for title, rows in (
        ("rules", report.rule_rows()),
        ("labels (categories)", report.label_rows()),
    ):
        table = Table(title.split()[0], "old", "new", "change", title=title)
        for name, before, after in rows:
            table.add_row(name, str(before), str(after), f"{after - before:+d}")
        print_table(console, table)
    if report.unreplayable_rules:
        console.print("[yellow]inputs not in the log (replayed as zero / no match):[/]")
        for rule, what in sorted(report.unreplayable_rules.items()):
            console.print(f"    {rule}: {what}", highlight=False)
    if report.changed:
        table = Table("post", "old", "new", "new rules", title=f"changed posts (first {show})")
        for change in report.changed[:show]:
            table.add_row(
                change.post_id,
                change.old_action.value,
                change.new_action.value,
                ", ".join(change.new_rules),
            )
        print_table(console, table)


_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"}


def _files(sources: list[Path]) -> Iterator[Path]:
    for source in sources:
        if source.is_dir():
            yield from sorted(p for p in source.rglob("*") if p.is_file())
        else:
            yield source


@bank_app.command("import")
def bank_import(
    sources: Annotated[
        list[Path], typer.Argument(help="Images, folders of images, or hash lists.")
    ],
    out: Annotated[Path, typer.Option(help="Hash-list file to write.")],
    kind: Annotated[str, typer.Option(help="pdq, md5 or sha256.")] = "pdq",
    append: Annotated[bool, typer.Option(help="Keep the hashes already in OUT.")] = False,
    semantic: Annotated[
        str | None,
        typer.Option(
            help="Build the semantic bank NAME instead: OUT is its directory; sources are "
            "JSONL rows {id, img, text, image_text} and/or images, embedded with the model."
        ),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="--semantic: the serving model's checkpoint (default: the starter)."),
    ] = None,
) -> None:
    """Build a bank file from images (hashed here) and existing hash lists (validated)."""
    if semantic is not None:
        _semantic_import(semantic, sources, out, checkpoint)
        return
    from moderator.policy.banks import HEX_LENGTH, HashListError, parse_hash_list

    if kind not in HEX_LENGTH:
        raise _fail(ValueError(f"--kind must be one of {sorted(HEX_LENGTH)}"))
    entries: dict[str, str] = {}
    if append and out.exists():
        entries.update(dict.fromkeys(parse_hash_list(out.read_text(), kind, str(out)), ""))  # type: ignore[arg-type]
    for file in _files(sources):
        try:
            if file.suffix.lower() in _IMAGE_SUFFIXES:
                digest = _hash_image(file, kind)
                if digest is not None:
                    entries.setdefault(digest, file.name)
            else:
                for digest in parse_hash_list(file.read_text(), kind, str(file)):  # type: ignore[arg-type]
                    entries.setdefault(digest, "")
        except (HashListError, OSError, ValueError) as exc:
            raise _fail(exc) from exc
    lines = [f"# moderator hash list: kind={kind}", f"# {len(entries)} hashes"]
    lines += [f"{digest},{note}" if note else digest for digest, note in sorted(entries.items())]
    out.write_text("\n".join(lines) + "\n")
    console.print(f"wrote {len(entries)} {kind} hashes to {out}")


def _semantic_import(name: str, sources: list[Path], out: Path, checkpoint: Path | None) -> None:
    from moderator.errors import ModeratorError
    from moderator.model import load_model
    from moderator.retrieval.bank import SemanticBankError
    from moderator.retrieval.importer import build_bank, read_items

    try:
        items = read_items(sources)
        model = load_model(checkpoint)
        bank = build_bank(name, model, items)
    except (SemanticBankError, ModeratorError) as exc:
        raise _fail(exc) from exc
    bank.save(out)
    console.print(
        f"wrote semantic bank {name}: {len(bank)} entries, model {bank.model_version}, to {out}",
        highlight=False,
    )


def _hash_image(path: Path, kind: str) -> str | None:
    data = path.read_bytes()
    if kind == "md5":
        return hashlib.md5(data, usedforsecurity=False).hexdigest()
    if kind == "sha256":
        return hashlib.sha256(data).hexdigest()
    import io

    import numpy as np
    from PIL import Image

    from moderator.signals.hashes import pdq_from_pixels

    with Image.open(io.BytesIO(data)) as image:
        pixels = np.asarray(image.convert("RGB"))
    digest, quality = pdq_from_pixels(pixels)
    if quality < 50:
        console.print(f"[yellow]skipped {path}: PDQ quality {quality} < 50[/]", highlight=False)
        return None
    return digest.hex()
