"""How well the product's OCR reads image text, and what that is worth to the classifier (#16).

    .venv/bin/python -m moderator.benchmark.ocr_eval davidson [--limit N] [--threads 2]
    .venv/bin/python -m moderator.benchmark.ocr_eval harmeme [--threads 2] [--train/--no-train]

Everything derived from the shared data sets (rendered images, OCR texts, derived JSONL,
checkpoints, summaries) goes under --work (default /tmp/ocr_eval), never into the repository.
OCR results are cached there per row, so a rerun costs only the scoring.

davidson: the tweets of the starter's held-out Davidson test split (exactly the rows of
`moderator eval moderator/model/starter ../shared/data/davidson/labeled_data.csv --preset
davidson --split test`) are rendered into images with moderator.demo.memes.render_meme (one
seeded generator per row), encoded as PNG, decoded into the reading copy by the worker's own
decoder (moderator.ingest.image.decode_image_views: RGB, bilinear, aspect kept, longest side at
most ocr.max_side, never enlarged), read by OcrSignal and compared with the tweet.
The starter then scores the same rows three ways through its own caption path
(moderator.model.base.score_captions, no image): (i) the tweet as the caption; (ii) OCR on: a
neutral caption plus the OCR text (moderator.text.model_text); (iii) OCR off: the neutral
caption alone. (iv) the OCR text alone is reported too. Neutral captions are drawn per row from
the demo's everyday captions (one in twenty is empty).

harmeme: the train and dev memes of ../shared/data/harmeme are read by OcrSignal and compared
with the data set's `text` field (itself a transcription, so this is agreement, not accuracy);
train_ocr.jsonl and dev_ocr.jsonl are written with `text` replaced by the normalised OCR text
and `img` made absolute; with --train, `moderator train` (today's defaults, --cache-dir under
--work) fits one model on the given text and one on the OCR text, and their reports are compared.

Word recall: the share of the reference's word tokens also found among the OCR's tokens, counted
as multisets (a word twice in the reference must be read twice). Tokens: the text through
moderator.text.normalise_text, case-folded, split into runs of letters and digits
(regex [^\\W_]+), so punctuation, emoji and spacing do not count. Token CER: Levenshtein
distance between the two token sequences joined by single spaces, over the reference's length.
Word precision: the share of the OCR's tokens found in the reference (multiset).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from moderator.benchmark.ocr_measure import (
    OcrCache,
    by_size,
    cache_key,
    console,
    fmt,
    load_average,
    make_signal,
    missed_kinds,
    ocr_all,
    ocr_figures,
    png,
    progress_bar,
    recall_figures,
    settings_figures,
    write_summary,
)
from moderator.demo.memes import LAYOUTS, render_meme
from moderator.demo.samples import NEUTRAL_CAPTIONS
from moderator.tables import print_table
from moderator.text import model_text, normalise_text

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
WORK = Path("/tmp/ocr_eval")
RENDER_VERSION = "memes-1"  # bump when render_meme's output or its use here changes
CAPTIONS = [c for c in NEUTRAL_CAPTIONS if c] + [""]  # the demo's everyday captions

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)

Work = Annotated[Path, typer.Option(help="Folder for everything derived from the data.")]
Threads = Annotated[
    int, typer.Option(help="OCR threads (one engine each), as signals.threads (2).")
]
MaxSeconds = Annotated[
    float | None,
    typer.Option(help="Replace ocr.max_seconds (2.0), a wall-clock budget: see the docs."),
]


# davidson -------------------------------------------------------------------------------------


@app.command()
def davidson(
    work: Work = WORK,
    threads: Threads = 2,
    limit: Annotated[
        int | None, typer.Option(help="A seeded stratified sample of the test split.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the renderings and captions.")] = 0,
    max_seconds: MaxSeconds = None,
) -> None:
    """Davidson's held-out tweets rendered into images: OCR recall and the starter's AUROCs."""
    from moderator.model import load_model
    from moderator.model.base import score_captions
    from moderator.training.dataset import PRESETS, read_dataset, sample_indices
    from moderator.training.evaluate import split_for_eval
    from moderator.training.metrics import auroc

    load_start = load_average()
    data = SHARED / "davidson" / "labeled_data.csv"
    dataset = read_dataset(data, PRESETS["davidson"])
    # The rows `moderator eval ... --preset davidson --split test` scores (seed 0, 0.1/0.1).
    dataset, test_rows = split_for_eval(dataset, "test", 0.1, 0.1, 0, None)
    assert test_rows is not None
    if limit is not None:
        labels = dataset.labels()[test_rows]
        test_rows = test_rows[np.sort(sample_indices(labels, limit, seed))]
    rows = [int(i) for i in test_rows]
    tweets = [dataset.examples[i].text for i in rows]
    labels = dataset.labels()[rows]
    signal = make_signal(max_seconds)
    layouts = [LAYOUTS[int(np.random.default_rng([seed, i, 1]).integers(3))] for i in rows]
    captions = [
        CAPTIONS[int(np.random.default_rng([seed, i, 2]).integers(len(CAPTIONS)))] for i in rows
    ]

    def render(i: int, text: str, layout: Any) -> Callable[[], bytes]:
        return lambda: png(render_meme(text, np.random.default_rng([seed, i]), layout=layout))

    keys = [cache_key(signal, i, seed, RENDER_VERSION) for i in rows]
    jobs = [
        (key, render(i, text, layout))
        for key, i, text, layout in zip(keys, rows, tweets, layouts, strict=True)
    ]
    cache = OcrCache(work / "davidson" / "ocr.jsonl")
    outputs = ocr_all(jobs, signal, cache, threads, "davidson test")
    read = [outputs[key]["text"] for key in keys]

    recall = recall_figures(zip(tweets, read, strict=True))
    by_layout: dict[str, dict[str, Any]] = {
        layout: recall_figures(
            (t, r) for t, r, lay in zip(tweets, read, layouts, strict=True) if lay == layout
        )
        for layout in LAYOUTS
    }

    model: Any = load_model(None)
    norm = [normalise_text(t).text for t in tweets]
    norm_read = [normalise_text(r).text for r in read]
    norm_captions = [normalise_text(c).text for c in captions]
    ways = {
        "tweet_raw (moderator eval)": tweets,
        "(i) tweet as caption": [model_text(t, "") for t in norm],
        "(ii) OCR on: caption + OCR": [
            model_text(c, r) for c, r in zip(norm_captions, norm_read, strict=True)
        ],
        "(iii) OCR off: caption only": [model_text(c, "") for c in norm_captions],
        "(iv) OCR text alone": [model_text("", r) for r in norm_read],
    }
    aurocs: dict[str, dict[str, float | None]] = {}
    with progress_bar() as progress:
        task = progress.add_task("scoring", total=len(ways) * len(rows))
        for name, texts in ways.items():
            scores = np.zeros((len(texts), len(model.categories)), dtype=np.float32)
            for start in range(0, len(texts), 256):
                chunk = texts[start : start + 256]
                no_image = np.zeros((len(chunk), model.image_embedding_dim), dtype=np.float32)
                scores[start : start + len(chunk)] = score_captions(
                    model, chunk, no_image, np.zeros(len(chunk), dtype=bool)
                )
                progress.advance(task, len(chunk))
            aurocs[name] = {
                category: auroc(labels[:, c], scores[:, model.categories.index(category)])
                for c, category in enumerate(dataset.categories)
            }

    summary = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_start_end": [load_start, load_average()],
        "data": str(data),
        "rows": len(rows),
        "sample": limit,
        "positives": dict(
            zip(dataset.categories, labels.sum(axis=0).astype(int).tolist(), strict=True)
        ),
        "seed": seed,
        "render_version": RENDER_VERSION,
        "model_version": model.model_version,
        "ocr_settings": settings_figures(signal),
        "ocr": ocr_figures(list(outputs.values())),
        "image_sides": _sides(list(outputs.values())),
        "recall": recall,
        "recall_by_layout": by_layout,
        "recall_by_size": by_size(tweets, read, [outputs[key] for key in keys]),
        "missed_tokens": missed_kinds(tweets, read),
        "auroc": aurocs,
        "ratio_ii_over_i": {
            c: _ratio(aurocs["(ii) OCR on: caption + OCR"][c], aurocs["(i) tweet as caption"][c])
            for c in dataset.categories
        },
    }
    write_summary(work / "davidson_summary.json", summary)
    _print_recall("Davidson test tweets rendered: OCR vs tweet", {"all": recall, **by_layout})
    _print_recall("by the image's longest side", summary["recall_by_size"])
    console.print(f"tokens not read, by where they were: {summary['missed_tokens']}")
    table = Table(title=f"starter {model.model_version}: AUROC on the same {len(rows)} rows")
    table.add_column("scored on")
    for category in dataset.categories:
        table.add_column(category)
    for name, values in aurocs.items():
        table.add_row(name, *(fmt(values[c]) for c in dataset.categories))
    table.add_row("(ii) / (i)", *(fmt(summary["ratio_ii_over_i"][c]) for c in dataset.categories))
    print_table(console, table)
    console.print(_ocr_line(summary["ocr"]))


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _sides(outputs: list[dict[str, Any]]) -> dict[str, float]:
    longest = np.array([max(o["shape"]) for o in outputs])
    shortest = np.array([min(o["shape"]) for o in outputs])
    return {
        "longest_mean": float(longest.mean()),
        "longest_max": int(longest.max()),
        "shortest_mean": float(shortest.mean()),
    }


def _print_recall(title: str, rows: dict[str, dict[str, Any]]) -> None:
    table = Table(title=title)
    columns = ("rows", "word recall", "precision", "token CER", "rows fully read", "ref tokens")
    for column in columns:
        table.add_column(column, justify="right")
    table.add_column("set", justify="left")
    for name, r in rows.items():
        table.add_row(
            str(r["rows"]),
            fmt(r["word_recall"]),
            fmt(r["word_precision"]),
            fmt(r["token_cer"]),
            fmt(r["rows_all_words_read"]),
            str(r["reference_tokens"]),
            name,
        )
    print_table(console, table)


def _ocr_line(ocr: dict[str, Any]) -> str:
    return (
        f"OCR per image (thread time): mean {ocr['ocr_seconds_mean']:.3f} s, "
        f"p50 {ocr['ocr_seconds_p50']:.3f} s, p95 {ocr['ocr_seconds_p95']:.3f} s, detection "
        f"mean {ocr['detect_seconds_mean']:.3f} s; over 2 s: {ocr['over_2s']} "
        f"(detection alone: {ocr['detect_over_2s']}); truncated {ocr['truncated']}, "
        f"empty {ocr['empty']}, mean lines {ocr['mean_lines']:.1f}"
    )


# harmeme --------------------------------------------------------------------------------------


@app.command()
def harmeme(
    work: Work = WORK,
    threads: Threads = 2,
    train: Annotated[bool, typer.Option(help="Train the given-text and OCR-text models.")] = True,
    max_seconds: MaxSeconds = None,
    splits: Annotated[str, typer.Option(help="Comma-separated: dev, train.")] = "dev,train",
    detect_short_side: Annotated[
        int | None,
        typer.Option(
            help="Comparison, not the product: detect with the shortest side enlarged to N px "
            "(rapidocr's default, 736). Outputs get a _detN suffix; no models are trained."
        ),
    ] = None,
) -> None:
    """HarMeme train/dev: OCR vs the data set's text, derived JSONL, and two trained models."""
    load_start = load_average()
    folder = SHARED / "harmeme"
    signal = make_signal(max_seconds)
    out = work / "harmeme"
    cache = OcrCache(out / "ocr.jsonl")
    recall: dict[str, dict[str, Any]] = {}
    sizes: dict[str, dict[str, dict[str, Any]]] = {}
    ocr: dict[str, dict[str, Any]] = {}
    derived: dict[str, Path] = {}
    all_outputs: list[dict[str, Any]] = []
    tag = "" if detect_short_side is None else f"_det{detect_short_side}"
    chosen = [split.strip() for split in splits.split(",") if split.strip()]
    for split in chosen:
        rows = [
            json.loads(line)
            for line in (folder / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
        keys = [
            cache_key(signal, split, row["id"], detect_short_side=detect_short_side) for row in rows
        ]

        def load(path: Path) -> Callable[[], bytes]:
            return path.read_bytes

        jobs = [(key, load(folder / row["img"])) for key, row in zip(keys, rows, strict=True)]
        outputs = ocr_all(jobs, signal, cache, threads, f"harmeme {split}", detect_short_side)
        read = [outputs[key]["text"] for key in keys]
        all_outputs += list(outputs.values())
        references = [row["text"] for row in rows]
        recall[split] = recall_figures(zip(references, read, strict=True))
        sizes[split] = by_size(references, read, [outputs[key] for key in keys])
        ocr[split] = ocr_figures(list(outputs.values()))
        derived[split] = out / f"{split}_ocr{tag}.jsonl"
        with derived[split].open("w", encoding="utf-8") as file:
            for row, text in zip(rows, read, strict=True):
                changed = {
                    **row,
                    "text": normalise_text(text).text,
                    "img": str((folder / row["img"]).resolve()),
                }
                file.write(json.dumps(changed) + "\n")

    models: dict[str, dict[str, Any]] = {}
    runs = {
        "given": (folder / "train.jsonl", folder / "dev.jsonl"),
        "ocr": (derived.get("train", out), derived.get("dev", out)),
    }
    if tag or set(chosen) != {"dev", "train"}:
        runs = {}  # models only from the product's reading of both splits
    for name, (train_file, dev_file) in runs.items():
        checkpoint = work / "models" / name
        command = [
            str(Path(sys.executable).parent / "moderator"),
            "train", str(train_file), "--val-data", str(dev_file), "--out", str(checkpoint),
            "--cache-dir", str(work / "cache"),
        ]  # fmt: skip
        report_file = checkpoint / "report" / "report.json"
        if train and not report_file.is_file():
            console.print(f"training {name}: {' '.join(command)}")
            started = time.perf_counter()
            subprocess.run(command, check=True)
            console.print(f"{name} trained in {time.perf_counter() - started:.0f} s")
        if report_file.is_file():
            report = json.loads(report_file.read_text(encoding="utf-8"))
            models[name] = {
                "command": " ".join(command),
                "model_version": report["model_version"],
                "dev": report["validation"],
                "train_file_test": report.get("test"),
                "test_rows": report.get("test_rows"),
                "best_epoch": report["history"]["best_epoch"],
            }

    summary = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_start_end": [load_start, load_average()],
        "data": str(folder),
        "ocr_settings": settings_figures(signal),
        "detect_short_side": detect_short_side,
        "ocr": ocr,
        "image_sides": _sides(all_outputs),
        "recall": recall,
        "recall_by_size": sizes,
        "derived": {k: str(v) for k, v in derived.items()},
        "models": models,
    }
    write_summary(work / f"harmeme_summary{tag}.json", summary)
    _print_recall("HarMeme: OCR vs the data set's text field", recall)
    for split in chosen:
        _print_recall(f"HarMeme {split} by the image's longest side", sizes[split])
    for split in chosen:
        console.print(f"{split}: " + _ocr_line(ocr[split]))
    if models:
        table = Table(title="HarMeme models (today's `moderator train` defaults)")
        for column in ("text", "dev acc", "dev AUROC", "dev F1", "test acc", "test AUROC"):
            table.add_column(column)
        for name, m in models.items():
            dev, test = m["dev"]["hate"], (m["train_file_test"] or {}).get("hate") or {}
            table.add_row(
                name,
                fmt(dev["accuracy"]),
                fmt(dev["auroc"]),
                fmt(dev["f1"]),
                fmt(test.get("accuracy")),
                fmt(test.get("auroc")),
            )
        print_table(console, table)
        console.print(
            "test: the 10% of train.jsonl `moderator train` holds out (seed 0); dev also chose "
            "the epoch and thresholds"
        )


if __name__ == "__main__":
    app()
