"""`moderator train --frame-pooling` on a few generated videos and frame folders (#14), on the
tiny random CLIP: the checkpoint carries the attention module, the worker's path (decode_post
→ build_request → score_request → pool_frames) reads the same frames and pools to the same
scores as training, and what is not supported is refused with the row named."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from moderator.config import DecodeLimits
from moderator.ingest import decode_post
from moderator.media_settings import MediaLimits
from moderator.model import load_model
from moderator.model.backbone_base import BackboneSpec
from moderator.model.backbones import load_backbone
from moderator.model.fusion_heads import HeadConfig
from moderator.model.fusion_model import FusionModerationModel
from moderator.serving.scoring import score_request
from moderator.signals.embeddings import model_embeddings
from moderator.training.dataset import DatasetSpec, read_dataset
from moderator.training.errors import TrainingDataError
from moderator.training.frame_training import predict_pooled
from moderator.training.frames import frame_embeddings, post_frames
from moderator.training.run import run_training
from moderator.training.synthetic_video import CATEGORY, write_video_dataset
from moderator.training.trainer import TrainConfig
from tests.unit.test_animated_frames import record
from tests.unit.test_model_backbones import tiny_clip_dir  # noqa: F401
from tests.unit.test_training_pipeline import cli_app
from workers.features import build_request, pool_frames

SPEC = DatasetSpec(categories=[CATEGORY], text_source="caption")
CONFIG = TrainConfig(
    head=HeadConfig(hidden_dim=16, projection_dim=4),
    epochs=3,
    batch_size=8,
    val_fraction=0.25,
    test_fraction=0.25,
)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video_dataset(tmp_path_factory.mktemp("videos"), posts=16, frames=4, seed=1)


@pytest.fixture(scope="module")
def clip(tiny_clip_dir: Path) -> BackboneSpec:  # noqa: F811
    return BackboneSpec(type="clip", id=str(tiny_clip_dir))


@pytest.fixture(scope="module")
def attention_run(
    videos: Path, clip: BackboneSpec, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("attention")
    cache = tmp_path_factory.mktemp("cache")
    run_training(videos, SPEC, clip, CONFIG, out, cache_dir=cache, frame_pooling="attention")
    return out


def test_attention_run_writes_the_module_and_reports_it(attention_run: Path) -> None:
    report = json.loads((attention_run / "report" / "report.json").read_text())
    assert report["frame_pooling"] == "attention"
    assert report["frames_per_post"]["max"] == 4
    assert report["frame_attention_parameters"] > 0
    assert "test" in report and 0.0 <= report["test"][CATEGORY]["auroc"] <= 1.0
    config = json.loads((attention_run / "config.json").read_text())
    assert config["frame_attention"] == {"hidden": 64}
    assert config["training"]["frame_pooling"] == "attention"
    assert load_model(attention_run).model_version == report["model_version"]


def test_served_pooled_scores_equal_training_pooled_scores(
    attention_run: Path, videos: Path, clip: BackboneSpec
) -> None:
    """The worker decodes each video post, the model scores every frame row and returns the
    frame logits, pool_frames pools them: the same frames (digests) and the same pooled
    scores as training's predict_pooled on its cached frame embeddings."""
    model = load_model(attention_run)
    assert isinstance(model, FusionModerationModel) and model.frame_attention is not None
    dataset = read_dataset(videos, SPEC)
    rows = [i for i, e in enumerate(dataset.examples) if e.video is not None][:6]
    limits = DecodeLimits(media=MediaLimits(pooling="attention"))
    posts = []
    for i in rows:
        example = dataset.examples[i]
        assert example.video is not None
        video = base64.b64encode(example.video.read_bytes()).decode()
        posts.append(decode_post(record(video_b64=video, caption=example.text), limits, 32))
        trained = post_frames(dataset, example, model.image_size)
        assert [f.digest for f in posts[-1].frames] == [f.digest for f in trained]
    built = build_request(posts, None, model_embeddings(model), model.image_size)
    response = score_request(model, built.request)
    served, _ = pool_frames(posts, response.scores, response.frame_logits)
    backbone = load_backbone(clip)
    embeddings = frame_embeddings(backbone, dataset, None).subset(np.array(rows))
    expected = predict_pooled(model.head, model.frame_attention, embeddings, CONFIG, "attention")
    np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-5)


def test_max_pooling_trains_the_head_only(videos: Path, clip: BackboneSpec, tmp_path: Path) -> None:
    report = run_training(videos, SPEC, clip, CONFIG, tmp_path, frame_pooling="max")
    assert report["frame_pooling"] == "max" and report["frame_attention_parameters"] == 0
    assert json.loads((tmp_path / "config.json").read_text())["frame_attention"] is None
    assert not (tmp_path / "frame_attention.safetensors").exists()


def test_what_is_not_supported_is_refused(videos: Path, clip: BackboneSpec, tmp_path: Path) -> None:
    stills = tmp_path / "stills.jsonl"
    stills.write_text('{"text": "a", "label": 0}\n{"text": "b", "label": 1}\n' * 4)
    with pytest.raises(TrainingDataError, match="needs rows with a video or a frame folder"):
        run_training(stills, SPEC, clip, CONFIG, tmp_path / "a", frame_pooling="attention")
    stage2 = CONFIG.model_copy(update={"unfreeze": True})
    with pytest.raises(TrainingDataError, match="do not combine with --unfreeze"):
        run_training(videos, SPEC, clip, stage2, tmp_path / "b", frame_pooling="mean")


def test_grid_architectures_refuse_rows_with_frames(videos: Path, tmp_path: Path) -> None:
    """VisualBERT and LXMERT read one image per row: a video row is refused, not dropped."""
    from moderator.model.single_stream import SingleStreamSpec
    from moderator.training.single_stream import run_single_stream

    with pytest.raises(TrainingDataError, match="rows have a video or frame folder"):
        run_single_stream(videos, SPEC, SingleStreamSpec(init="random"), CONFIG, tmp_path)


def test_an_unreadable_video_names_the_file_and_line(
    videos: Path, clip: BackboneSpec, tmp_path: Path
) -> None:
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    data = tmp_path / "data.jsonl"
    data.write_text(
        "".join(
            json.dumps({"text": "x", "video": str(videos.parent / "videos" / "00000.mp4"),
                        "label": i % 2}) + "\n"
            for i in range(6)
        )
        + json.dumps({"text": "y", "video": "broken.mp4", "label": 1})
        + "\n"
    )  # fmt: skip
    with pytest.raises(TrainingDataError, match=r"data\.jsonl:7: cannot use video .*broken\.mp4"):
        run_training(data, SPEC, clip, CONFIG, tmp_path / "out", frame_pooling="max")


def test_the_cli_option(videos: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli_app(), ["train", str(videos), "--out", str(tmp_path), "--frame-pooling", "median"]
    )
    assert result.exit_code == 2 and "--frame-pooling must be max, mean or attention" in (
        result.output
    )
