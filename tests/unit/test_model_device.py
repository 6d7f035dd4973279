"""Devices and arithmetic of loaded models (issue #18).

On the CPU: device resolution and the refusals at load, the version suffixes, CPU fp32 outputs
equal to the reference recorded before CUDA support (tests/data/fp32_reference.npz, 1e-6), the
uint8 input path, and the torch.compile warm-up (traced with a counting backend: no kernels are
generated, so inductor itself is not exercised here).

gpu-marked tests need a CUDA device (tests/conftest.py skips them elsewhere): modules and outputs
on CUDA, CUDA fp32 / fp16 / bf16 against CPU fp32, the pinned-memory path, inductor warm-up.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch._dynamo import register_backend

from moderator.model import ModelLoadError, ModerationModel, load_model
from moderator.model import inference as inference_module
from moderator.model.backbone_base import ImagePreprocessing
from moderator.model.efficientnet_lite import pixels_to_tensor
from moderator.model.fusion_model import FusionModerationModel
from moderator.model.inference import (
    InferenceOptions,
    pixels_to_device,
    resolve_device,
    validate_options,
)
from moderator.model.starter_model import StarterModerationModel
from tests.data import record_fp32_reference as reference

COMPILES: list[int] = []


@register_backend
def moderator_counting(gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Callable[..., Any]:
    """A torch.compile backend that runs the traced graph as is and counts compilations."""
    COMPILES.append(1)
    return gm.forward


@pytest.fixture(scope="module")
def recorded() -> dict[str, np.ndarray]:
    with np.load(reference.OUT) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture
def two_threads() -> Iterator[None]:
    """The reference was recorded with 2 threads; Lite0's convolutions round per thread split."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("reference-checkpoints")
    return {
        "offline": reference.offline_fusion_checkpoint(root / "offline"),
        "clip": reference.tiny_clip_checkpoint(root / "clip"),
    }


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def tolerance(recorded: dict[str, np.ndarray]) -> float:
    """1e-6 where the reference was recorded (same torch, same CPU kernel set); elsewhere other
    SIMD kernels round Lite0's convolutions differently (~1e-5 on features up to 6)."""
    same = (
        str(recorded["meta/torch"]) == torch.__version__
        and str(recorded["meta/cpu_capability"]) == torch.backends.cpu.get_cpu_capability()
    )
    return 1e-6 if same else 1e-4


# Device resolution and refusals at load.


def test_auto_is_the_cpu_without_cuda(no_cuda: None) -> None:
    assert resolve_device("auto", num_gpus=0) == "cpu"
    assert resolve_device("auto", num_gpus=1) == "cpu"
    assert resolve_device("cpu") == "cpu"


def test_auto_is_the_cpu_for_a_replica_given_no_gpu() -> None:
    """Even where torch sees a GPU: a replica without num_gpus must not take one."""
    assert resolve_device("auto", num_gpus=0) == "cpu"


@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_explicit_cuda_without_cuda_fails_at_load(
    device: str, no_cuda: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*args: Any) -> Any:
        raise AssertionError("weights loaded before the device was checked")

    monkeypatch.setattr("moderator.model.starter_model.load_efficientnet_lite0", never)
    with pytest.raises(ModelLoadError, match=rf"device '{device}': torch sees no CUDA") as error:
        resolve_device(device)
    assert "use device auto or cpu" in str(error.value)
    with pytest.raises(ModelLoadError, match=rf"device '{device}'.*use device auto or cpu"):
        load_model(None, InferenceOptions(device=device))


def test_fp16_on_the_cpu_is_refused_before_loading() -> None:
    with pytest.raises(ModelLoadError, match=r"precision fp16 needs a CUDA device.*fp32, bf16"):
        load_model(None, InferenceOptions(precision="fp16"))


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_int8_on_cuda_is_refused_without_needing_a_gpu(device: str) -> None:
    with pytest.raises(ModelLoadError, match=r"precision int8 runs on the CPU only.*fp16 or bf16"):
        validate_options(InferenceOptions(precision="int8", device=device))


@pytest.mark.parametrize("device", ["auto", "gpu", "cuda:x", ""])
def test_unresolved_or_unknown_devices_are_refused(device: str) -> None:
    with pytest.raises(ModelLoadError, match="expected cpu, cuda or cuda:N"):
        validate_options(InferenceOptions(device=device))


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_cpu_precisions_are_valid(precision: Any) -> None:
    validate_options(InferenceOptions(precision=precision, tf32=True, compile=True))


@pytest.mark.parametrize(
    ("options", "suffix"),
    [
        (InferenceOptions(), ""),
        (InferenceOptions(tf32=True), ""),  # the CPU ignores TF32
        (InferenceOptions("bf16"), "+bf16"),
        (InferenceOptions("int8"), "+int8"),
        (InferenceOptions(compile=True), "+compile"),
        (InferenceOptions("bf16", compile=True), "+bf16-compile"),
        (InferenceOptions(device="cuda"), "+cuda"),
        (InferenceOptions(device="cuda:3"), "+cuda"),
        (InferenceOptions("fp16", "cuda"), "+cuda-fp16"),
        (InferenceOptions("bf16", "cuda"), "+cuda-bf16"),
        (InferenceOptions(device="cuda", tf32=True), "+cuda-tf32"),
        (InferenceOptions("bf16", "cuda", tf32=True, compile=True), "+cuda-bf16-tf32-compile"),
    ],
)
def test_version_suffix(options: InferenceOptions, suffix: str) -> None:
    assert options.version_suffix() == suffix


# CPU fp32 equals the reference recorded before CUDA support.


@pytest.mark.usefixtures("two_threads")
def test_starter_fp32_cpu_matches_the_reference(recorded: dict[str, np.ndarray]) -> None:
    model = load_model(None)
    assert not model.model_version.endswith(("+cuda", "+compile"))
    check_against_reference(model, "starter", recorded)


@pytest.mark.usefixtures("two_threads")
@pytest.mark.parametrize("name", ["offline", "clip"])
def test_fusion_fp32_cpu_matches_the_reference(
    name: str, checkpoints: dict[str, Path], recorded: dict[str, np.ndarray]
) -> None:
    check_against_reference(load_model(checkpoints[name]), name, recorded)


def check_against_reference(
    model: ModerationModel, prefix: str, recorded: dict[str, np.ndarray]
) -> None:
    atol = tolerance(recorded)
    for key, value in reference.model_outputs(model, prefix).items():
        assert value.dtype == np.float32, key
        np.testing.assert_allclose(value, recorded[key], rtol=1e-6, atol=atol, err_msg=key)


# The uint8 input path.


def test_cpu_pixels_are_wrapped_not_copied() -> None:
    pixels = reference.pixels(2, 8)
    tensor = pixels_to_device(pixels, "cpu")
    assert tensor.dtype == torch.uint8 and tensor.shape == (2, 3, 8, 8)
    assert tensor.data_ptr() == pixels.__array_interface__["data"][0]


def test_read_only_pixels_are_copied_without_a_warning() -> None:
    pixels = reference.pixels(1, 8)
    frozen = np.frombuffer(pixels.tobytes(), dtype=np.uint8).reshape(pixels.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tensor = pixels_to_device(frozen, "cpu")
    assert torch.equal(tensor, torch.from_numpy(pixels).permute(0, 3, 1, 2))


def test_cpu_scaling_is_the_old_arithmetic_bit_for_bit() -> None:
    """pixels_to_tensor and ImagePreprocessing.to_tensor against the float32-numpy code they
    replaced: same values and the same memory layout (convolutions pick kernels by it)."""
    pixels = reference.pixels(3, 16)
    old = torch.from_numpy(pixels.astype(np.float32)).permute(0, 3, 1, 2)
    lite0_old = (old / 255.0 - 0.5) / 0.5
    lite0_new = pixels_to_tensor(pixels)
    assert torch.equal(lite0_new, lite0_old) and lite0_new.stride() == lite0_old.stride()
    pre = ImagePreprocessing(image_size=16, mean=(0.48, 0.45, 0.4), std=(0.26, 0.26, 0.27))
    expected = old * pre.rescale_factor
    expected = (expected - torch.tensor(pre.mean).view(1, 3, 1, 1)) / torch.tensor(pre.std).view(
        1, 3, 1, 1
    )
    assert torch.equal(pre.to_tensor(pixels), expected.contiguous())


# torch.compile warm-up (traced on the CPU by the counting backend).


def test_compile_warms_up_at_load_and_real_batches_never_compile(
    checkpoints: dict[str, Path],
) -> None:
    plain = load_model(checkpoints["clip"])
    before = len(COMPILES)
    options = InferenceOptions(compile=True, compile_backend="moderator_counting")
    model = load_model(checkpoints["clip"], options)
    assert model.model_version == plain.model_version + "+compile"
    # Both encoders compiled at load: a lone image or caption gets a graph of its own (size 1 is
    # specialised), the other warm-up shapes share graphs general in the batch (and length).
    assert len(COMPILES) - before >= 4
    after_load = len(COMPILES)
    for n in (1, 2, 3, 7, 15, 16, 17, 33):
        pixels = reference.pixels(n, model.image_size, seed=n)
        np.testing.assert_allclose(
            model.embed_images(pixels), plain.embed_images(pixels), atol=1e-6
        )
    words = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog"]
    for n in (1, 2, 5, 64, 70):
        captions = [" ".join(words[: 1 + (i % len(words))] * (1 + i % 5)) for i in range(n)]
        np.testing.assert_allclose(
            model.embed_texts(captions), plain.embed_texts(captions), atol=1e-6
        )
    assert len(COMPILES) == after_load, "a real batch paid for a compilation"


def test_warm_up_runs_only_when_it_buys_something(
    checkpoints: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[object] = []
    monkeypatch.setattr("moderator.model.fusion_model.warm_up", calls.append)
    load_model(checkpoints["clip"])
    assert calls == []
    model = load_model(
        checkpoints["clip"], InferenceOptions(compile=True, compile_backend="moderator_counting")
    )
    assert calls == [model]


# On a CUDA device (skipped without one).

# Against CPU fp32: absolute on scores in [0, 1], and the least cosine of embeddings. CPU bf16
# measured here on the same inputs: scores within 0.0011, embedding cosines >= 0.9986 (Lite0).
CUDA_TOLERANCE = {"fp32": 1e-3, "bf16": 0.05, "fp16": 0.02}
CUDA_COSINE = {"fp32": 0.99999, "bf16": 0.995, "fp16": 0.999}


def cuda_modules(model: ModerationModel) -> list[torch.nn.Module]:
    if isinstance(model, StarterModerationModel):
        modules = [model._image_net, model._text_encoder.model]
        return modules + ([model._head] if model._head is not None else [])
    assert isinstance(model, FusionModerationModel)
    return [*model.backbone.trainable_modules().values(), model.head]


@pytest.mark.gpu
@pytest.mark.usefixtures("two_threads")
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_starter_on_cuda_is_close_to_cpu_fp32(
    precision: Any, recorded: dict[str, np.ndarray]
) -> None:
    model = load_model(None, InferenceOptions(precision, device="cuda"))
    assert model.model_version.endswith("+cuda" if precision == "fp32" else f"+cuda-{precision}")
    for module in cuda_modules(model):
        assert all(p.device.type == "cuda" for p in module.parameters())
    outputs = reference.model_outputs(model, "starter")
    for key, value in outputs.items():
        assert value.dtype == np.float32 and np.isfinite(value).all(), key
    np.testing.assert_allclose(
        outputs["starter/scores"], recorded["starter/scores"], atol=CUDA_TOLERANCE[precision]
    )
    for key in ("starter/images", "starter/texts"):
        cosine = np.sum(outputs[key] * recorded[key], axis=1) / (
            np.linalg.norm(outputs[key], axis=1) * np.linalg.norm(recorded[key], axis=1)
        )
        assert cosine.min() > CUDA_COSINE[precision], (key, cosine)


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["offline", "clip"])
def test_fusion_on_cuda_is_close_to_cpu_fp32(
    name: str, checkpoints: dict[str, Path], recorded: dict[str, np.ndarray]
) -> None:
    for precision in ("fp32", "bf16", "fp16"):
        model = load_model(checkpoints[name], InferenceOptions(precision, device="cuda"))
        for module in cuda_modules(model):
            assert all(p.device.type == "cuda" for p in module.parameters())
        assert isinstance(model, FusionModerationModel) and model.backbone.device.type == "cuda"
        scores = reference.model_outputs(model, name)[f"{name}/scores"]
        assert scores.dtype == np.float32
        np.testing.assert_allclose(
            scores, recorded[f"{name}/scores"], atol=CUDA_TOLERANCE[precision], err_msg=precision
        )


@pytest.mark.gpu
def test_cuda_images_go_through_pinned_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    pinned: list[torch.Tensor] = []
    original = torch.Tensor.pin_memory

    def spy(self: torch.Tensor, *args: Any) -> torch.Tensor:
        out = original(self, *args)
        pinned.append(out)
        return out

    monkeypatch.setattr(torch.Tensor, "pin_memory", spy)
    tensor = pixels_to_device(reference.pixels(2, 8), "cuda")
    assert tensor.device.type == "cuda" and tensor.dtype == torch.uint8
    assert pinned and pinned[-1].is_pinned() and pinned[-1].dtype == torch.uint8
    model = load_model(None, InferenceOptions(device="cuda"))
    pinned.clear()
    model.embed_images(reference.pixels(20, model.image_size))
    assert len(pinned) == 2  # one per chunk of 16


@pytest.mark.gpu
def test_tf32_flags_follow_the_options(checkpoints: dict[str, Path]) -> None:
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        model = load_model(checkpoints["clip"], InferenceOptions(device="cuda", tf32=True))
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert model.model_version.endswith("+cuda-tf32")
        model = load_model(checkpoints["clip"], InferenceOptions(device="cuda"))
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert model.model_version.endswith("+cuda")
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@pytest.mark.gpu
def test_inductor_warm_up_on_cuda(checkpoints: dict[str, Path]) -> None:
    """Real kernels (inductor) on the tiny CLIP: compiled at load, none after, close to eager."""
    from torch._dynamo.backends.registry import lookup_backend

    inductor = lookup_backend("inductor")
    compiles: list[int] = []

    @register_backend
    def moderator_counting_inductor(gm: torch.fx.GraphModule, inputs: list[Any]) -> Any:
        compiles.append(1)
        return inductor(gm, inputs)

    eager = load_model(checkpoints["clip"], InferenceOptions("fp16", "cuda"))
    options = InferenceOptions(
        "fp16", "cuda", compile=True, compile_backend="moderator_counting_inductor"
    )
    model = load_model(checkpoints["clip"], options)
    assert model.model_version.endswith("+cuda-fp16-compile") and compiles
    loaded = len(compiles)
    for n in (1, 5, 16, 20):
        pixels = reference.pixels(n, model.image_size, seed=n)
        np.testing.assert_allclose(
            model.embed_images(pixels), eager.embed_images(pixels), atol=0.02
        )
    model.embed_texts(reference.CAPTIONS * 5)
    assert len(compiles) == loaded, "a real batch paid for a compilation"
    assert inference_module.needs_warm_up(options)
