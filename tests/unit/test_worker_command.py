"""`python -m workers` and `moderator worker` are one command: the CLI passes its arguments
through to the worker's parser (the only one), by module path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from moderator import cli
from workers.__main__ import parse_args


@pytest.mark.parametrize(
    "args",
    [["--config", "settings.yaml"], ["-c", "settings.yaml"], ["--config=settings.yaml"], []],
)
def test_moderator_worker_execs_python_m_workers_with_its_arguments(
    monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    calls: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(cli.os, "execv", lambda path, argv: calls.append((path, argv)))
    result = CliRunner().invoke(cli.app, ["worker", *args])
    assert result.exit_code == 0, result.output
    assert calls == [(sys.executable, [sys.executable, "-m", "workers", *args])]
    assert parse_args(args).config == (Path("settings.yaml") if args else None)


def test_help_is_the_workers_own(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(cli.os, "execv", lambda path, argv: calls.append(argv))
    assert CliRunner().invoke(cli.app, ["worker", "--help"]).exit_code == 0
    assert calls == [[sys.executable, "-m", "workers", "--help"]]


def test_both_commands_read_the_settings_file_the_same_way(tmp_path: Path) -> None:
    """Without Kafka or Ray: a settings file that does not parse stops both the same way."""
    config = tmp_path / "settings.yaml"
    config.write_text("kafka: [not, a, mapping\n")
    moderator = Path(sys.executable).parent / "moderator"
    outcomes = []
    for command in (
        [sys.executable, "-m", "workers", "--config", str(config)],
        [str(moderator), "worker", "--config", str(config)],
    ):
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        assert str(config) in result.stderr, result.stderr
        outcomes.append((result.returncode, result.stderr.partition(" ERROR ")[2].strip()))
    assert outcomes[0][0] == 2 and outcomes[0] == outcomes[1]
