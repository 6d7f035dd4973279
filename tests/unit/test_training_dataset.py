"""Reading training data: layouts, label mappings, CSV, located errors and seeded splits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from moderator.training.cli_options import dataset_spec
from moderator.training.dataset import (
    PRESETS,
    DatasetSpec,
    read_dataset,
    sample_indices,
    split_indices,
)
from moderator.training.errors import TrainingDataError


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def touch_images(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"not decoded here")


def test_hateful_memes_layout_works_as_is(tmp_path: Path) -> None:
    touch_images(tmp_path, "img/01.png", "img/02.png")
    data = write_jsonl(
        tmp_path / "train.jsonl",
        [
            {"id": 1, "img": "img/01.png", "label": 1, "text": "a"},
            {"id": 2, "img": "img/02.png", "label": 0, "text": "b"},
        ],
    )
    dataset = read_dataset(data, DatasetSpec())
    assert dataset.categories == ["hate"]
    assert dataset.labels().tolist() == [[1.0], [0.0]]
    assert dataset.examples[0].image == tmp_path / "img/01.png"


def test_list_valued_labels_through_a_label_map(tmp_path: Path) -> None:
    data = write_jsonl(
        tmp_path / "d.jsonl",
        [
            {"caption": "x", "tags": ["slur", "gun"]},
            {"caption": "y", "tags": []},
            {"caption": "z", "tags": ["insult"]},
        ],
    )
    spec = DatasetSpec(
        text_field="caption",
        image_field=None,
        label_fields=["tags"],
        categories=None,
        label_map={"slur": ["hate", "offensive"], "insult": ["offensive"], "gun": ["weapons"]},
    )
    dataset = read_dataset(data, spec)
    assert dataset.categories == ["hate", "offensive", "weapons"]
    assert dataset.labels().tolist() == [[1, 1, 1], [0, 0, 0], [0, 1, 0]]


def test_one_field_per_category(tmp_path: Path) -> None:
    data = write_jsonl(
        tmp_path / "d.jsonl",
        [{"t": "a", "is_hate": True, "is_rude": "0"}, {"t": "b", "is_hate": 0, "is_rude": 2}],
    )
    spec = DatasetSpec(
        text_field="t",
        image_field=None,
        label_fields=["is_hate", "is_rude"],
        categories=["hate", "offensive"],
    )
    assert read_dataset(data, spec).labels().tolist() == [[1, 0], [0, 1]]


def test_davidson_style_csv_with_the_preset(tmp_path: Path) -> None:
    csv = tmp_path / "labeled.csv"
    csv.write_text(
        ",count,hate_speech,offensive_language,neither,class,tweet\n"
        '0,3,0,0,3,2,"just a ""normal"" day &amp; more"\n'
        '1,3,2,1,0,0,"line one\nline two"\n'
        "2,3,0,3,0,1,rude words\n"
    )
    dataset = read_dataset(csv, PRESETS["davidson"])
    assert dataset.categories == ["hate", "offensive"]
    assert dataset.labels().tolist() == [[0, 0], [1, 1], [0, 1]]
    assert dataset.examples[0].text == 'just a "normal" day & more'
    assert dataset.examples[1].text == "line one\nline two" and dataset.examples[0].image is None


@pytest.mark.parametrize(
    ("row", "spec", "message"),
    [
        (
            {"text": "a", "img": None},
            DatasetSpec(image_field=None),
            r"d\.jsonl:2: field 'label' missing",
        ),
        (
            {"text": "a", "label": 7},
            DatasetSpec(image_field=None, label_map={"0": [], "1": ["hate"]}),
            r"d\.jsonl:2: field 'label': value 7 is not in the label map",
        ),
        (
            {"text": "a", "label": "maybe"},
            DatasetSpec(image_field=None),
            r"label 'maybe' is not 0/1",
        ),
        ({"text": "", "img": None, "label": 1}, DatasetSpec(), "neither a caption nor an image"),
    ],
)
def test_errors_name_file_line_and_field(
    tmp_path: Path, row: dict[str, Any], spec: DatasetSpec, message: str
) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "ok", "label": 0}, row])
    with pytest.raises(TrainingDataError, match=message):
        read_dataset(data, spec)


def test_invalid_json_line_is_located(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a", "label": 1}\n{"text": \n')
    with pytest.raises(TrainingDataError, match=r"d\.jsonl:2: invalid JSON"):
        read_dataset(data, DatasetSpec(image_field=None))


def test_missing_images_are_reported_with_a_hint(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "a", "img": "nope.png", "label": 1}])
    with pytest.raises(TrainingDataError, match="--image-root"):
        read_dataset(data, DatasetSpec())


def test_image_root_option(tmp_path: Path) -> None:
    touch_images(tmp_path / "pictures", "a.png")
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "a", "img": "a.png", "label": 1}])
    dataset = read_dataset(data, DatasetSpec(image_root=tmp_path / "pictures"))
    assert dataset.examples[0].image == tmp_path / "pictures" / "a.png"


def test_split_is_seeded_stratified_and_disjoint() -> None:
    labels = np.zeros((1000, 2), np.float32)
    labels[:50, 0] = 1  # a rare category
    labels[:600, 1] = 1
    parts = split_indices(labels, 0.1, 0.2, seed=3)
    again = split_indices(labels, 0.1, 0.2, seed=3)
    for name in parts:
        np.testing.assert_array_equal(parts[name], again[name])
    joined = np.concatenate(list(parts.values()))
    assert len(joined) == 1000 and len(np.unique(joined)) == 1000
    assert labels[parts["test"], 0].sum() == 10 and labels[parts["val"], 0].sum() == 5
    assert not np.array_equal(parts["test"], split_indices(labels, 0.1, 0.2, seed=4)["test"])
    sample = sample_indices(labels, 100, seed=0)
    assert len(sample) == 100 and labels[sample, 0].sum() == 5


def test_cli_options_override_the_preset() -> None:
    spec = dataset_spec("davidson", None, None, None, ["0=hate", "1=offensive", "2="], None, None)
    assert spec.label_map == {"0": ["hate"], "1": ["offensive"], "2": []}
    assert spec.text_field == "tweet" and spec.categories is None
    spec = dataset_spec(None, "caption", "none", ["a", "b"], None, ["x", "y"], None)
    assert spec.image_field is None and spec.label_fields == ["a", "b"]
    assert spec.categories == ["x", "y"] and spec.label_map == {}


def test_cli_reports_bad_data_without_a_traceback(tmp_path: Path) -> None:
    from tests.unit.test_training_pipeline import cli_app

    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "a", "label": "maybe"}])
    result = CliRunner().invoke(
        cli_app(), ["train", str(data), "--out", str(tmp_path / "o"), "--image-field", "none"]
    )
    assert result.exit_code == 2 and "is not 0/1" in result.output
