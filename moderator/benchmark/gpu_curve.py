"""Throughput and latency per batch size, precision and device: the latency/batch-size curve.

    .venv/bin/python -m moderator.benchmark.gpu_curve --device cuda --precisions fp32,fp16,bf16 \\
        --batch-sizes 1,4,16,64,256 --seconds 3 --json curve.json

For each precision it loads the model once, then for each batch size calls embed_images
(and embed_texts) back to back for --seconds: images/s, captions/s and per-call latency
p50/p95. On CUDA each call ends with the embeddings back in host memory (what a replica
returns), and NVML's utilisation of the model's GPU is sampled meanwhile. A benchmark, not
a test: it prints one JSON line per row and writes --json if given.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from moderator.benchmark.model_bench import images
from moderator.model import load_model
from moderator.model.inference import InferenceOptions, resolve_device

CAPTION = "a caption of ordinary length, about a day out with friends at the lake"


class UtilisationSampler(threading.Thread):
    """Mean NVML utilisation of one GPU while a measurement runs (None off CUDA)."""

    def __init__(self, device: str, period_s: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.period_s = period_s
        self.samples: list[float] = []
        self._halt = threading.Event()
        self._handle: Any = None
        if device.startswith("cuda"):
            from moderator.serving.replica_metrics import cuda_device_uuid

            uuid = cuda_device_uuid(device)
            try:
                import pynvml

                pynvml.nvmlInit()
                self._handle = pynvml.nvmlDeviceGetHandleByUUID(uuid) if uuid else None
            except Exception as exc:  # no driver library: throughput only
                print(f"no GPU utilisation: {exc}", file=sys.stderr)

    def run(self) -> None:
        if self._handle is None:
            return
        import pynvml

        while not self._halt.wait(self.period_s):
            self.samples.append(pynvml.nvmlDeviceGetUtilizationRates(self._handle).gpu / 100)

    def finish(self) -> float | None:
        self._halt.set()
        if self.is_alive():
            self.join()
        return round(statistics.fmean(self.samples), 3) if self.samples else None


def timed(call: Callable[[], object], seconds: float) -> list[float]:
    call()  # warm-up: kernels, caches, autotuning
    call()
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(latencies) < 3:
        started = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - started)
    return latencies


def curve(
    checkpoint: str | None,
    device: str,
    precision: Any,
    tf32: bool,
    batch_sizes: list[int],
    seconds: float,
) -> list[dict[str, Any]]:
    options = InferenceOptions(precision=precision, device=device, tf32=tf32)
    model = load_model(checkpoint, options)
    pixels = images(max(batch_sizes), model.image_size)
    rows = []
    for kind in ("images", "captions"):
        for size in batch_sizes:
            batch = pixels[:size]
            captions = [f"{CAPTION} {i}" for i in range(size)]

            def call(
                batch: np.ndarray = batch, captions: list[str] = captions, kind: str = kind
            ) -> object:
                if kind == "images":
                    return model.embed_images(batch)
                return model.embed_texts(captions)

            sampler = UtilisationSampler(device)
            sampler.start()
            latencies = timed(call, seconds)
            utilisation = sampler.finish()
            rows.append(
                {
                    "device": device,
                    "precision": precision,
                    "tf32": tf32,
                    "model_version": model.model_version,
                    "kind": kind,
                    "batch_size": size,
                    "per_s": round(size * len(latencies) / sum(latencies), 1),
                    "latency_p50_ms": round(1000 * statistics.median(latencies), 2),
                    "latency_p95_ms": round(1000 * float(np.quantile(latencies, 0.95)), 2),
                    "gpu_utilization": utilisation,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="checkpoint dir (default: starter)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--precisions", default="fp32", help="comma-separated")
    parser.add_argument("--tf32", action="store_true", help="TF32 matmuls for fp32 on CUDA")
    parser.add_argument("--batch-sizes", default="1,4,16,64", help="comma-separated")
    parser.add_argument("--seconds", type=float, default=3.0, help="per batch size")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    device = resolve_device(args.device, num_gpus=1)
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    rows = [
        row
        for precision in args.precisions.split(",")
        for row in curve(args.checkpoint, device, precision, args.tf32, sizes, args.seconds)
    ]
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
