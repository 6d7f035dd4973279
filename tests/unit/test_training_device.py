"""`moderator train --device` (issue #18): CPU training unchanged, devices checked up front.

On the CPU: stage 1 and stage 2 give the results recorded before CUDA support
(tests/data/fp32_reference.npz), the CLI trains with --device cpu and refuses an unusable device
before reading any data, and CPU embedding-cache keys are unchanged. gpu-marked: one tiny run of
both stages on CUDA (AMP), saved from CPU copies and loadable on the CPU.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from moderator.model import load_model
from moderator.model.backbone_base import BackboneSpec
from moderator.model.backbone_offline import offline_preprocessing
from moderator.model.base import score_captions
from moderator.training.device import LossStep, amp_dtype, training_device
from moderator.training.embedding_cache import backbone_fingerprint
from moderator.training.errors import TrainingDeviceError
from moderator.training.synthetic import CATEGORY, write_synthetic_dataset
from tests.data import record_fp32_reference as reference
from tests.unit.test_model_backbones import tiny_clip_dir  # noqa: F401
from tests.unit.test_training_pipeline import cli_app, train

EXACT = 1e-6


@pytest.fixture(scope="module")
def recorded() -> dict[str, np.ndarray]:
    with np.load(reference.OUT) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("small"), rows=40, seed=2)


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def compare(outputs: dict[str, np.ndarray], recorded: dict[str, np.ndarray]) -> None:
    for key, value in outputs.items():
        np.testing.assert_allclose(value, recorded[key], rtol=EXACT, atol=EXACT, err_msg=key)


def test_stage1_on_the_cpu_matches_the_reference(recorded: dict[str, np.ndarray]) -> None:
    compare(reference.stage1_outputs("cpu"), recorded)


def test_stage2_on_the_cpu_matches_the_reference(
    tmp_path: Path, recorded: dict[str, np.ndarray]
) -> None:
    compare(reference.stage2_outputs(tmp_path, "cpu"), recorded)


def test_auto_is_the_cpu_without_cuda(no_cuda: None) -> None:
    assert training_device("auto") == torch.device("cpu")
    assert training_device("cpu") == torch.device("cpu")
    assert amp_dtype(torch.device("cpu")) is None


@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_cuda_is_refused(device: str, no_cuda: None) -> None:
    with pytest.raises(TrainingDeviceError, match=rf"--device {device}: torch sees no CUDA"):
        training_device(device)


@pytest.mark.parametrize("device", ["gpu", "cuda:", "CPU"])
def test_unknown_devices_are_refused(device: str) -> None:
    with pytest.raises(TrainingDeviceError, match="expected auto, cpu, cuda or cuda:N"):
        training_device(device)


def test_cpu_loss_step_is_plain_backward_and_step() -> None:
    layer = torch.nn.Linear(2, 1)
    step = LossStep(torch.optim.SGD(layer.parameters(), lr=0.1), None)
    assert step.scaler is None
    before = layer.weight.detach().clone()
    step(layer(torch.ones(1, 2)).sum())
    assert not torch.equal(before, layer.weight)


def test_cpu_embedding_cache_keys_are_unchanged() -> None:
    """CPU keys are what they were before devices existed; GPU embeddings get keys of their own."""
    spec = BackboneSpec(type="offline", id="default")
    pre = offline_preprocessing(64)
    old = {"spec": spec.model_dump(), "pre": pre.model_dump()}
    expected = hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()
    cpu: Any = SimpleNamespace(spec=spec, preprocessing=pre, device=torch.device("cpu"))
    cuda: Any = SimpleNamespace(spec=spec, preprocessing=pre, device=torch.device("cuda"))
    assert backbone_fingerprint(cpu) == expected
    assert backbone_fingerprint(cuda) != expected


def test_cli_trains_on_the_cpu(small_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "ckpt"
    result = CliRunner().invoke(
        cli_app(),
        ["train", str(small_data), "--out", str(out), "--category", CATEGORY, "--image-size",
         "32", "--epochs", "2", "--val-fraction", "0.25", "--test-fraction", "0.25",
         "--cache-dir", str(tmp_path / "cache"), "--device", "cpu"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "training on cpu" in result.output
    report = json.loads((out / "report" / "report.json").read_text())
    assert report["device"] == "cpu" and report["stage2_amp"] is None
    assert load_model(out).model_version == report["model_version"]


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("cuda", "--device cuda: torch sees no CUDA device"),
        ("cuda:2", "--device cuda:2: torch sees no CUDA device"),
        ("gpu", "String should match pattern"),
    ],
)
def test_cli_refuses_an_unusable_device_before_training(
    device: str, message: str, no_cuda: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("training started")

    monkeypatch.setattr("moderator.training.run.run_training", never)
    missing = tmp_path / "no-such-data.jsonl"  # never read: the device is checked first
    out = tmp_path / "ckpt"
    result = CliRunner().invoke(
        cli_app(), ["train", str(missing), "--out", str(out), "--device", device]
    )
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not out.exists()


# On a CUDA device (skipped without one).


@pytest.mark.gpu
def test_stage1_on_cuda_returns_a_cpu_head() -> None:
    from moderator.model.fusion_heads import HeadConfig
    from moderator.training.embedding_cache import Embeddings
    from moderator.training.trainer import TrainConfig, train_head

    rng = np.random.default_rng(0)
    emb = Embeddings(
        rng.normal(size=(32, 8)).astype(np.float32),
        rng.normal(size=(32, 4)).astype(np.float32),
        np.ones(32, bool),
    )
    labels = (emb.text[:, :1] > 0).astype(np.float32)
    config = TrainConfig(head=HeadConfig(hidden_dim=8, projection_dim=2), epochs=2, device="cuda")
    head, history = train_head(emb, labels, emb, labels, config)
    assert all(t.device.type == "cpu" for t in head.state_dict().values())
    assert len(history.val_auroc) == 2 and np.isfinite(history.train_loss).all()
    outputs = reference.stage1_outputs("cuda")
    assert np.isfinite(outputs["stage1/scores"]).all()


@pytest.mark.gpu
def test_both_stages_on_cuda_write_a_checkpoint_the_cpu_loads(
    tmp_path: Path,
    tiny_clip_dir: Path,  # noqa: F811
) -> None:
    data = write_synthetic_dataset(tmp_path / "data", rows=40, seed=1)
    backbone = BackboneSpec(type="clip", id=str(tiny_clip_dir))
    out = tmp_path / "ckpt"
    report = train(
        data, out, tmp_path / "cache", backbone, unfreeze=True, stage2_epochs=1, epochs=2,
        device="cuda",
    )  # fmt: skip
    expected_amp = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    assert report["device"] == "cuda" and report["stage2_amp"] == expected_amp
    assert len(report["history"]["stage2_val_auroc"]) == 1
    tuned = load_file(str(out / "backbone.safetensors"))
    assert tuned and all(
        t.device.type == "cpu" and t.dtype == torch.float32 for t in tuned.values()
    )
    model = load_model(out)  # CPU fp32, as a CPU replica would load it
    pixels = reference.pixels(2, model.image_size)
    scores = score_captions(model, ["a", "b"], model.embed_images(pixels), np.ones(2, bool))
    assert np.isfinite(scores).all()
