"""The GPU check's wiring, on the CPU: it cannot run here (no GPU), so these check that it
refuses clearly, that each step points at a real program, and that the curve and the summary
work on the CPU with tiny sizes."""

from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from tests.paths import REPO


def _load(name: str) -> ModuleType:
    return importlib.import_module(f"moderator.benchmark.{name}")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_the_check_says_so_and_exits_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(REPO / "scripts" / "gpu-check.sh"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "no CUDA device visible to torch" in result.stderr
    assert not (tmp_path / "out").exists()


def test_every_step_runs_a_program_that_exists(tmp_path: Path) -> None:
    check = _load("gpu_check")
    steps = check.steps(tmp_path, quick=False)
    names = [step.name for step in steps]
    assert names[0] == "gpu tests" and names[-2:] == ["precision quality", "pipeline vs raw"]
    assert {"curve fp32", "curve fp16", "curve bf16", "curve fp32 tf32"} <= set(names)
    for step in steps:
        if step.argv[:2] == [sys.executable, "-m"]:  # python -m MODULE
            assert importlib.util.find_spec(step.argv[2]) is not None, step.name
            continue
        program = next(Path(a) for a in step.argv if a.endswith(("pytest", "moderator")))
        assert program.exists(), step.name
    # The steps' time limits add up to the issue's budget of 8 minutes.
    assert sum(step.timeout_s for step in steps) <= 8 * 60


def test_the_curve_runs_on_the_cpu(tmp_path: Path) -> None:
    curve = _load("gpu_curve")
    out = tmp_path / "curve.json"
    assert (
        curve.main(
            ["--device", "cpu", "--batch-sizes", "1,2", "--seconds", "0", "--json", str(out)]
        )
        == 0
    )
    rows = json.loads(out.read_text())
    assert [(r["kind"], r["batch_size"]) for r in rows] == [
        ("images", 1), ("images", 2), ("captions", 1), ("captions", 2)
    ]  # fmt: skip
    assert all(r["per_s"] > 0 and r["gpu_utilization"] is None for r in rows)


def test_the_summary_reads_as_tables() -> None:
    check = _load("gpu_check")
    summary = {
        "date": "2026-11-30",
        "device": "NVIDIA H200",
        "steps": [
            {"step": "gpu tests", "exit": 0, "seconds": 30.0},
            {
                "step": "curve fp16",
                "exit": 0,
                "seconds": 40.0,
                "result": [
                    {
                        "precision": "fp16",
                        "tf32": False,
                        "kind": "images",
                        "batch_size": 64,
                        "per_s": 1.0,
                        "latency_p50_ms": 2.0,
                        "latency_p95_ms": 3.0,
                        "gpu_utilization": 0.5,
                    }
                ],
            },
            {"step": "pipeline vs raw", "exit": "timed out after 240 s", "seconds": 240.0},
        ],
    }
    text = check.markdown(summary)
    assert "# GPU check 2026-11-30" in text
    assert "| curve fp16 | 0 | 40.0 |" in text
    assert "| fp16 | False | images | 64 | 1.0 | 2.0 | 3.0 | 0.5 |" in text
    assert "| pipeline vs raw | timed out after 240 s | 240.0 |" in text
