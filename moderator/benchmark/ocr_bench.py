"""OCR speed on this CPU (#16): images/s for detection alone and for detection + recognition.

    .venv/bin/python -m moderator.benchmark.ocr_bench [--images 40] [--seed 0] [--json PATH]

The images are memes rendered by moderator.demo.memes.render_meme (320-640 px a side) from
built-in English sentences (no data set), encoded as PNG and decoded into the worker's reading
copy by the worker's own decoder (moderator.ingest.image.decode_image_views). Rows:

- detection: the text detection inside OcrEngine.read (rapidocr's detect-and-crop call, timed
  where the product makes it), one thread; the detection network's input size is reported;
- OcrEngine.read: detection + recognition with the product settings, one thread;
- OcrSignal.run: the signal as the worker calls it (one engine per thread), on one thread and
  on signals.threads (2) threads sharing the images;
- comparison rows, NOT the product: rapidocr's default detection size (the shortest side
  enlarged to 736 px, no cap on the longest), alone and with recognition.

Word recall (share of the rendered text's word tokens found in what was read, multiset; tokens
are runs of letters and digits after moderator.text.normalise_text and case folding) shows what
each setting reads. A benchmark, not a test: it prints a table (and --json); the machine may be
shared, so the load average before and after is printed too.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

from moderator.config import DecodeLimits
from moderator.demo.memes import render_meme
from moderator.ingest.image import decode_image_views
from moderator.signals.base import SignalSubject
from moderator.signals.ocr import OcrEngine, OcrSignal
from moderator.signals.settings import OcrSettings, SignalSettings
from moderator.tables import print_table
from moderator.text import normalise_text

console = Console(width=120)

SENTENCES = [
    "when you finally fix the bug and three new ones appear",
    "nobody: absolutely nobody: my cat at three in the morning",
    "me explaining to my mom why I need another monitor",
    "this is fine",
    "they said it would only take five minutes",
    "Homemade pasta tonight with a side of garlic bread and a glass of red wine",
    "Monday again? I did not agree to this",
    "One does not simply walk into the office without coffee",
    "my plants after I water them once a month",
    "Breaking: local man discovers the mute button after 45 minutes of a video call",
    "expectation vs reality: the cake I ordered online",
    "If you can read this you are standing too close to the screen",
    "When the group project is due tomorrow and nobody has started yet",
    "weekend plans: sleep, eat, repeat",
    "Road trip playlist suggestions? We have 14 hours of driving ahead of us",
    "the face you make when the wifi password is on the back of the router",
]


def tokens(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", normalise_text(text).text.casefold())


def recall(reference: str, read: str) -> tuple[int, int]:
    ref, got = Counter(tokens(reference)), Counter(tokens(read))
    return sum((ref & got).values()), sum(ref.values())


def reading_image(image: Image.Image, max_side: int) -> np.ndarray:
    """The worker's reading copy of `image` sent as PNG, by the worker's own decoder."""
    out = io.BytesIO()
    image.save(out, format="PNG")
    _, reading = decode_image_views(out.getvalue(), DecodeLimits(), 224, max_side)
    assert reading is not None
    return reading


def memes(count: int, seed: int, max_side: int) -> tuple[list[np.ndarray], list[str]]:
    texts, images = [], []
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        text = SENTENCES[i % len(SENTENCES)]
        if i % 3 == 2:  # some longer, tweet-like texts
            text = f"{text}. {SENTENCES[(i * 7 + 3) % len(SENTENCES)]}"
        texts.append(text)
        images.append(reading_image(render_meme(text, rng), max_side))
    return images, texts


class DetectionLog:
    """Records each detection an engine runs inside OcrEngine.read: its time, boxes and the
    detection network's input size. rapidocr's own call runs unchanged; the size is worked
    out outside the timed part."""

    def __init__(self, engine: OcrEngine) -> None:
        self.calls: list[tuple[float, int, tuple[int, int]]] = []
        self.recording = False
        ocr: Any = engine._ocr
        detector, detect_and_crop = ocr._load_det_model(), ocr.detect_and_crop

        def logged(image: np.ndarray, record: Any) -> Any:
            started, boxes = time.perf_counter(), 0
            try:
                crops, detected = detect_and_crop(image, record)
                boxes = len(crops)
                return crops, detected
            finally:  # also when rapidocr raises for an image without text
                seconds = time.perf_counter() - started
                if self.recording:
                    shape = detector.get_preprocess().resize(image).shape
                    self.calls.append((seconds, boxes, (int(shape[0]), int(shape[1]))))

        ocr.detect_and_crop = logged

    def row(self, name: str) -> dict[str, Any]:
        seconds = np.array([c[0] for c in self.calls])
        ms = seconds * 1000
        sizes = np.array([c[2] for c in self.calls])
        return {
            "name": name,
            "threads": 1,
            "images": len(self.calls),
            "images_per_s": len(self.calls) / float(seconds.sum()),
            "ms_p50": float(np.percentile(ms, 50)),
            "ms_p95": float(np.percentile(ms, 95)),
            "ms_max": float(ms.max()),
            "boxes_mean": float(np.mean([c[1] for c in self.calls])),
            "detector_input_mean": [float(sizes[:, 1].mean()), float(sizes[:, 0].mean())],
        }


def timed(
    name: str, images: list[np.ndarray], read: Callable[[np.ndarray], Any], threads: int = 1
) -> tuple[dict[str, Any], list[Any]]:
    per_image: list[float] = [0.0] * len(images)

    def one(index: int) -> Any:
        started = time.perf_counter()
        out = read(images[index])
        per_image[index] = time.perf_counter() - started
        return out

    started = time.perf_counter()
    if threads == 1:
        outputs = [one(i) for i in range(len(images))]
    else:
        with ThreadPoolExecutor(threads) as pool:
            outputs = list(pool.map(one, range(len(images))))
    wall = time.perf_counter() - started
    ms = np.array(per_image) * 1000
    row = {
        "name": name,
        "threads": threads,
        "images": len(images),
        "images_per_s": len(images) / wall,
        "ms_p50": float(np.percentile(ms, 50)),
        "ms_p95": float(np.percentile(ms, 95)),
        "ms_max": float(ms.max()),
    }
    return row, outputs


def with_recall(row: dict[str, Any], texts: list[str], read: list[str]) -> dict[str, Any]:
    found = total = 0
    for text, got in zip(texts, read, strict=True):
        f, t = recall(text, got)
        found, total = found + f, total + t
    return {**row, "word_recall": found / total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    settings = OcrSettings()
    load_before = os.getloadavg()
    images, texts = memes(args.images, args.seed, settings.max_side)
    engine = OcrEngine(settings)
    signal = OcrSignal(settings)
    threads = SignalSettings().threads
    # Comparison only: rapidocr's default detection size (shortest side enlarged to 736 px).
    default_size = OcrEngine(settings)
    default_det: Any = default_size._ocr._load_det_model()
    default_det.limit_type, default_det.limit_side_len = "min", 736
    default_log = DetectionLog(default_size)
    # Warm-up: rapidocr loads each model at its first call; onnxruntime's first runs are slow.
    for warm in images[:2]:
        engine.read(warm)
        default_size.read(warm)
        signal.run(SignalSubject(image_sha256="warm", reading_image=warm))
    with ThreadPoolExecutor(threads) as pool:  # one engine per thread: warm the pool's
        list(pool.map(lambda im: signal.run(SignalSubject(reading_image=im)), images[:4]))

    sides = np.array([im.shape[:2] for im in images])

    def product_read(image: np.ndarray) -> str:
        return str(signal.run(SignalSubject(reading_image=image))["text"])

    def engine_rows(name: str, engine: OcrEngine, log: DetectionLog) -> list[dict[str, Any]]:
        log.recording = True
        row, reads = timed(f"{name}detection + recognition", images, engine.read)
        log.recording = False
        read = [" ".join(lines) for lines, _, _ in reads]
        truncated = sum(t for _, _, t in reads)
        detection = log.row(f"{name}detection")
        return [detection, {**with_recall(row, texts, read), "truncated": truncated}]

    rows = engine_rows("OcrEngine.read: ", engine, DetectionLog(engine))
    row, read = timed("OcrSignal.run (product)", images, product_read)
    rows.append(with_recall(row, texts, read))
    row, read = timed("OcrSignal.run (product)", images, product_read, threads=threads)
    rows.append(with_recall(row, texts, read))
    rows += engine_rows("not product, short side 736: ", default_size, default_log)
    load_after = os.getloadavg()

    result = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "images": args.images,
        "image_side_mean": [float(sides[:, 1].mean()), float(sides[:, 0].mean())],
        "detector_input_mean": rows[0]["detector_input_mean"],
        "detector_input_rapidocr_default_mean": rows[-2]["detector_input_mean"],
        "settings": settings.model_dump(),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "rows": rows,
    }
    table = Table(title=f"OCR on {result['cpu']} ({result['cores']} cores), {args.images} memes")
    for column in ("what", "threads", "images/s", "ms p50", "ms p95", "ms max", "word recall"):
        table.add_column(column, justify="left" if column == "what" else "right")
    for r in rows:
        recall_text = f"{r['word_recall']:.3f}" if "word_recall" in r else "-"
        table.add_row(
            r["name"],
            str(r["threads"]),
            f"{r['images_per_s']:.2f}",
            f"{r['ms_p50']:.0f}",
            f"{r['ms_p95']:.0f}",
            f"{r['ms_max']:.0f}",
            recall_text,
        )
    print_table(console, table)
    w, h = result["image_side_mean"]
    dw, dh = result["detector_input_mean"]
    ww, wh = result["detector_input_rapidocr_default_mean"]
    console.print(
        f"images: mean {w:.0f} x {h:.0f} px (reading copy); detector input: mean {dw:.0f} x "
        f"{dh:.0f} px (product), {ww:.0f} x {wh:.0f} px (short side 736); boxes per image "
        f"{rows[0]['boxes_mean']:.1f}; truncated by a cap (OcrEngine.read): "
        f"{rows[1]['truncated']} (product), {rows[-1]['truncated']} (short side 736)"
    )
    console.print(
        "load average (1, 5, 15 min) before "
        + ", ".join(f"{x:.2f}" for x in load_before)
        + "; after "
        + ", ".join(f"{x:.2f}" for x in load_after)
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
