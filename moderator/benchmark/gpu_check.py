"""The GPU check of issue #18, in one go (under 8 minutes on one GPU): run it wherever a GPU
is available and copy its summary, dated, into docs/throughput.md.

    scripts/gpu-check.sh [OUT_DIR]
    # = .venv/bin/python -m moderator.benchmark.gpu_check --out OUT_DIR

Steps, each a subprocess with its own time limit, 8 minutes in all (a step that fails or
overruns is reported and the next one runs):

1. the GPU tests (pytest -m gpu);
2. the latency/batch-size curve: images/s and captions/s, latency p50/p95 and NVML
   utilisation per batch size for fp32, fp32 + TF32, fp16 and bf16 (moderator.benchmark.gpu_curve);
3. fp16 and bf16 against fp32: largest score change and per-category AUROC on a sample of
   Davidson's held-out split (moderator.benchmark.model_bench);
4. raw loop vs pipeline on the GPU: `moderator bench` with the Classifier on CUDA
   (pipeline / raw, added latency and its Serve wait).

Writes OUT_DIR/summary.json and OUT_DIR/summary.md, plus each step's own JSON and log.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@dataclass
class Step:
    name: str
    argv: list[str]
    timeout_s: float
    result: Path | None = None  # the JSON the step writes


def steps(out: Path, quick: bool) -> list[Step]:
    sizes = "1,4" if quick else "1,8,32,128,512"
    seconds = "0.2" if quick else "1.5"
    precisions = ["fp32"] if quick else ["fp32", "fp16", "bf16"]
    curve = [
        Step(
            f"curve {precision}{' tf32' if tf32 else ''}",
            [
                sys.executable,
                "-m",
                "moderator.benchmark.gpu_curve",
                "--device",
                "cuda",
                "--precisions",
                precision,
                *(["--tf32"] if tf32 else []),
                "--batch-sizes",
                sizes,
                "--seconds",
                seconds,
                "--json",
                str(out / f"curve-{precision}{'-tf32' if tf32 else ''}.json"),
            ],
            45,
            out / f"curve-{precision}{'-tf32' if tf32 else ''}.json",
        )
        for precision, tf32 in [(p, False) for p in precisions] + [("fp32", True)]
    ]
    settings = out / "gpu-settings.yaml"
    return [
        Step(
            "gpu tests",
            [str(BIN / "pytest"), "-m", "gpu", "-q", "-p", "no:cacheprovider", str(REPO / "tests")],
            60,
        ),
        *curve,
        Step(
            "precision quality",
            [
                sys.executable,
                "-m",
                "moderator.benchmark.model_bench",
                "--device",
                "cuda",
                "--precisions",
                ",".join(precisions),
                "--captions",
                "300" if quick else "2000",
                "--images",
                "32" if quick else "256",
                "--json",
                str(out / "precision.json"),
            ],
            60,
            out / "precision.json",
        ),
        Step(
            "pipeline vs raw",
            [
                str(BIN / "moderator"),
                "bench",
                "--config",
                str(settings),
                "--posts",
                "256" if quick else "3072",
                "--ingest-posts",
                "1000" if quick else "20000",
                "--out",
                str(out / "bench"),
            ],
            180,
            out / "bench" / "bench.json",
        ),
    ]


def write_gpu_settings(path: Path) -> None:
    """The Classifier on the GPU; everything else as `moderator bench` sets it up."""
    path.write_text(
        yaml.safe_dump(
            {"serving": {"classifier": {"device": "cuda", "num_gpus": 1, "precision": "fp32"}}}
        )
    )


def run_step(step: Step, out: Path) -> dict[str, Any]:
    log = out / f"{step.name.replace(' ', '-')}.log"
    started = time.monotonic()
    with log.open("w") as sink:
        try:
            code: int | str = subprocess.run(
                step.argv, stdout=sink, stderr=subprocess.STDOUT, timeout=step.timeout_s, cwd=REPO
            ).returncode
        except subprocess.TimeoutExpired:
            code = f"timed out after {step.timeout_s:.0f} s"
    report: dict[str, Any] = {
        "step": step.name,
        "exit": code,
        "seconds": round(time.monotonic() - started, 1),
        "log": str(log),
    }
    if step.result is not None and step.result.is_file():
        report["result"] = json.loads(step.result.read_text())
    else:
        report["tail"] = log.read_text()[-1500:]
    print(f"{step.name}: exit {code} in {report['seconds']} s", flush=True)
    return report


def markdown(summary: dict[str, Any]) -> str:
    lines = [f"# GPU check {summary['date']}", "", f"Device: {summary['device']}", ""]
    lines += ["| step | exit | seconds |", "| --- | --- | --- |"]
    lines += [f"| {s['step']} | {s['exit']} | {s['seconds']} |" for s in summary["steps"]]
    curves = [s for s in summary["steps"] if s["step"].startswith("curve")]
    curve_rows = [row for step in curves for row in step.get("result", [])]
    if curve_rows:
        lines += ["", "| precision | tf32 | kind | batch | per s | p50 ms | p95 ms | GPU busy |"]
        lines += ["| --- | --- | --- | --- | --- | --- | --- | --- |"]
        lines += [
            f"| {r['precision']} | {r['tf32']} | {r['kind']} | {r['batch_size']} | {r['per_s']} "
            f"| {r['latency_p50_ms']} | {r['latency_p95_ms']} | {r['gpu_utilization']} |"
            for r in curve_rows
        ]
    for step in summary["steps"]:
        if step["step"] == "precision quality" and "result" in step:
            lines += ["", "Precision against fp32 (Davidson held-out sample):", ""]
            lines += ["```", *(json.dumps(row) for row in step["result"]), "```"]
        if step["step"] == "pipeline vs raw" and "result" in step:
            bench = step["result"]
            keys = ("pipeline_vs_raw", "pipeline_posts_per_s", "raw_loop_runs_posts_per_s")
            lines += ["", "Pipeline vs raw loop:", ""]
            lines += [f"- {key}: {bench.get(key)}" for key in keys]
            lines += [f"- open loop: {json.dumps(bench.get('open_loop'))}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(f"gpu-check-{datetime.date.today()}"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the wiring")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print(
            f"no CUDA device visible to torch {torch.__version__} (CUDA build "
            f"{torch.version.cuda or 'none'}): the GPU check needs one",
            file=sys.stderr,
        )
        return 2
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    write_gpu_settings(out / "gpu-settings.yaml")
    reports = [run_step(step, out) for step in steps(out, args.quick)]
    summary: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "steps": reports,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "summary.md").write_text(markdown(summary))
    print(f"wrote {out / 'summary.md'}")
    return 0 if all(report["exit"] == 0 for report in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
