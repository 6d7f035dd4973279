"""What moderator.benchmark.ocr_eval measures with: token recall and error rate, the reading
copy as the worker makes it, a row-keyed OCR cache under the work folder, OCR over many images
on threads with a progress bar, and the summary figures. No data set is read here.
"""

from __future__ import annotations

import io
import json
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from moderator.config import DecodeLimits
from moderator.ingest.image import decode_image_views
from moderator.signals.base import SignalSubject
from moderator.signals.ocr import OcrSignal
from moderator.signals.settings import OcrSettings
from moderator.text import normalise_text

TOKEN = r"[^\W_]+"
console = Console(width=120)


# Text comparison ------------------------------------------------------------------------------


def tokens(text: str) -> list[str]:
    """Normalised, case-folded word tokens (runs of letters and digits)."""
    return re.findall(TOKEN, normalise_text(text).text.casefold())


def word_recall(reference: str, read: str) -> tuple[int, int]:
    """(reference tokens found in the read text as a multiset, reference tokens)."""
    ref, got = Counter(tokens(reference)), Counter(tokens(read))
    return sum((ref & got).values()), sum(ref.values())


def levenshtein(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def token_cer(reference: str, read: str) -> tuple[int, int]:
    """(edit distance, reference length) over the space-joined token sequences."""
    ref, got = " ".join(tokens(reference)), " ".join(tokens(read))
    return levenshtein(ref, got), len(ref)


# OCR as the product runs it -------------------------------------------------------------------


def reading_image(data: bytes, max_side: int) -> np.ndarray:
    """The worker's reading copy of an encoded image, made by the worker's own decoder
    (RGB, bilinear, aspect kept, longest side at most max_side, never enlarged)."""
    _, reading = decode_image_views(data, DecodeLimits(), 224, max_side)
    assert reading is not None
    return reading


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


_timing = threading.local()


def timed_detection(signal: OcrSignal, detect_short_side: int | None = None) -> None:
    """Make this thread's engine record how long its last detection took (`_timing.detect`).

    Only for the figures: the wrapped call is rapidocr's own, unchanged. detect_short_side
    (comparison runs, not the product): detect on the image enlarged until its shortest side is
    that many pixels, rapidocr's default behaviour (736), instead of at the reading copy's size.
    """
    ocr: Any = signal.engine()._ocr
    _timing.detect = 0.0
    if getattr(ocr, "_timed", False):
        return
    if detect_short_side is not None:
        detector = ocr._load_det_model()
        detector.limit_type, detector.limit_side_len = "min", detect_short_side
    detect = ocr.detect_and_crop

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return detect(*args, **kwargs)
        finally:
            _timing.detect = time.perf_counter() - started

    ocr.detect_and_crop = timed
    ocr._timed = True


def make_signal(max_seconds: float | None) -> OcrSignal:
    """OcrSignal with the product's settings, the time budget replaced when given."""
    settings = OcrSettings() if max_seconds is None else OcrSettings(max_seconds=max_seconds)
    return OcrSignal(settings)


def cache_key(signal: OcrSignal, *parts: object, detect_short_side: int | None = None) -> str:
    # The signal's own key leaves out the time budget; a lifted budget reads more.
    budget = f"t{signal.settings.max_seconds:g}"
    detector = [] if detect_short_side is None else [f"det-min{detect_short_side}"]
    return ":".join([*map(str, parts), signal.qualified_version, budget, *detector])


class OcrCache:
    """OCR outputs by key in a JSONL file, appended as they come."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.items: dict[str, dict[str, Any]] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    record = json.loads(line)
                    self.items[record["key"]] = record
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def add(self, record: dict[str, Any]) -> None:
        with self._lock:
            self.items[record["key"]] = record
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def ocr_all(
    jobs: list[tuple[str, Callable[[], bytes]]],
    signal: OcrSignal,
    cache: OcrCache,
    threads: int,
    label: str,
    detect_short_side: int | None = None,
) -> dict[str, dict[str, Any]]:
    """OCR output per key, from the cache or read now on `threads` threads."""
    todo = [(key, load) for key, load in jobs if key not in cache.items]
    max_side = signal.settings.max_side

    def read(key: str, load: Callable[[], bytes]) -> dict[str, Any]:
        pixels = reading_image(load(), max_side)
        timed_detection(signal, detect_short_side)
        started = time.perf_counter()
        output = signal.run(SignalSubject(image_sha256=key, reading_image=pixels))
        seconds = time.perf_counter() - started
        return {
            "key": key,
            "seconds": round(seconds, 4),
            "detect_seconds": round(_timing.detect, 4),
            "shape": pixels.shape[:2],
            **output,
        }

    if todo:
        console.print(f"{label}: {len(jobs) - len(todo)} cached, reading {len(todo)}")
        with progress_bar() as progress, ThreadPoolExecutor(threads) as pool:
            task = progress.add_task(f"OCR {label}", total=len(todo))
            futures = [pool.submit(read, key, load) for key, load in todo]
            for future in as_completed(futures):
                cache.add(future.result())
                progress.advance(task)
    return {key: cache.items[key] for key, _ in jobs}


def recall_figures(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    found = total = edits = chars = perfect = rows = read_tokens = 0
    for reference, read in pairs:
        f, t = word_recall(reference, read)
        e, c = token_cer(reference, read)
        found, total, edits, chars = found + f, total + t, edits + e, chars + c
        read_tokens += len(tokens(read))
        perfect += f == t
        rows += 1
    return {
        "rows": rows,
        "word_recall": found / total if total else None,
        "word_precision": found / read_tokens if read_tokens else None,
        "token_cer": edits / chars if chars else None,
        "rows_all_words_read": perfect / rows if rows else None,
        "reference_tokens": total,
    }


def by_size(
    references: list[str], reads: list[str], outputs: list[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Recall per bucket of the reading copy's longest side."""
    buckets = {"<400 px": (0, 400), "400-499 px": (400, 500), ">=500 px": (500, 1 << 30)}
    result = {}
    for name, (low, high) in buckets.items():
        chosen = [
            (ref, got)
            for ref, got, out in zip(references, reads, outputs, strict=True)
            if low <= max(out["shape"]) < high
        ]
        if chosen:
            seconds = [o["seconds"] for o in outputs if low <= max(o["shape"]) < high]
            result[name] = {**recall_figures(chosen), "ocr_seconds_mean": float(np.mean(seconds))}
    return result


def missed_kinds(references: list[str], reads: list[str]) -> dict[str, int]:
    """Where the reference tokens that were not read came from (counts)."""
    kinds: Counter[str] = Counter()
    for reference, read in zip(references, reads, strict=True):
        ref, got = Counter(tokens(reference)), Counter(tokens(read))
        missed, extra = ref - got, got - ref
        places = {
            "url": set(tokens(" ".join(re.findall(r"https?://\S+", reference)))),
            "mention": set(tokens(" ".join(re.findall(r"@\w+", reference)))),
            "hashtag": set(tokens(" ".join(re.findall(r"#\w+", reference)))),
        }
        for token, count in missed.items():
            kind = next((k for k, members in places.items() if token in members), None)
            if kind is None:
                if any(token in e and token != e for e in extra):
                    kind = "merged into a longer token"
                elif any(e in token and token != e for e in extra):
                    kind = "read in part"
                else:
                    kind = "other"
            kinds[kind] += count
    return dict(kinds.most_common())


def ocr_figures(outputs: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = np.array([o["seconds"] for o in outputs])
    detect = np.array([o["detect_seconds"] for o in outputs])
    return {
        "ocr_seconds_mean": float(seconds.mean()),
        "ocr_seconds_p50": float(np.percentile(seconds, 50)),
        "ocr_seconds_p95": float(np.percentile(seconds, 95)),
        "detect_seconds_mean": float(detect.mean()),
        "over_2s": int((seconds > 2.0).sum()),
        "detect_over_2s": int((detect > 2.0).sum()),
        "truncated": int(sum(o["truncated"] for o in outputs)),
        "empty": int(sum(not o["text"] for o in outputs)),
        "mean_lines": float(np.mean([o["lines"] for o in outputs])),
        "mean_confidence": float(np.mean([o["confidence"] for o in outputs if o["text"]] or [0])),
    }


def settings_figures(signal: OcrSignal) -> dict[str, Any]:
    return {"qualified_version": signal.qualified_version, **signal.settings.model_dump()}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    console.print(f"summary written to {path}")


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
