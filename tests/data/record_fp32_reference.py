"""Record fp32 CPU outputs of the models and of training, as the reference later code must match.

Run: ``.venv/bin/python tests/data/record_fp32_reference.py`` (about a minute on 2 cores).

Written before the models learnt to run on CUDA (issue #18), so tests/unit/test_model_device.py
and tests/unit/test_training_device.py can check that fp32 on the CPU still gives today's numbers
(to 1e-6). It records, on deterministic inputs (seeded uint8 pixels, fixed captions):

- the packaged starter model: embed_images, embed_texts and score;
- a fusion checkpoint on the offline backbone (MiniLM + Lite0 at 64 px, seeded cross head);
- a fusion checkpoint on the tiny random CLIP the unit tests build;
- stage 1 (train_head on seeded embeddings) and stage 2 (finetune_encoders on the tiny CLIP):
  the scores of the trained heads and the per-epoch history.

Rerun only on purpose (a deliberate change of fp32 arithmetic), and say so in the commit.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
OUT = HERE / "fp32_reference.npz"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CAPTIONS = ["Sunset at the beach with friends", "You are a fucking idiot", "my new bike"]
# Four posts: (caption, image) index or -1 for none.
POSTS = [(0, 0), (1, -1), (-1, 1), (2, 0)]
FUSION_CATEGORIES = ["hate", "offensive", "weapons"]
OFFLINE_IMAGE_SIZE = 64


def pixels(n: int, size: int, seed: int = 18) -> np.ndarray:
    """Seeded uint8 RGB noise [n, size, size, 3]."""
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def model_outputs(model: Any, prefix: str) -> dict[str, np.ndarray]:
    """embed_images, embed_texts and score on the fixed inputs, keyed `prefix/...`."""
    images = model.embed_images(pixels(2, model.image_size))
    texts = model.embed_texts(CAPTIONS)
    has_text = np.array([c >= 0 for c, _ in POSTS])
    has_image = np.array([i >= 0 for _, i in POSTS])
    text_rows = np.stack([texts[max(c, 0)] for c, _ in POSTS]) * has_text[:, None]
    image_rows = np.stack([images[max(i, 0)] for _, i in POSTS]) * has_image[:, None]
    scores = model.score(
        text_rows.astype(np.float32), has_text, image_rows.astype(np.float32), has_image
    )
    return {f"{prefix}/images": images, f"{prefix}/texts": texts, f"{prefix}/scores": scores}


def offline_fusion_checkpoint(directory: Path) -> Path:
    """A fusion checkpoint on the offline backbone with a seeded (untrained) cross head."""
    import torch

    from moderator.model.backbone_base import BackboneSpec
    from moderator.model.backbone_offline import offline_preprocessing
    from moderator.model.fusion_config import FusionConfig
    from moderator.model.fusion_heads import HeadConfig, build_head
    from moderator.model.fusion_model import save_fusion_checkpoint

    head_config = HeadConfig(hidden_dim=16, projection_dim=4)
    torch.manual_seed(0)
    head = build_head(head_config, 384, 1280, len(FUSION_CATEGORIES))
    # Realistic standardisation statistics, so the head's inputs are not all zero-centred.
    generator = torch.Generator().manual_seed(1)
    text = torch.nn.functional.normalize(torch.randn(32, 384, generator=generator), dim=1)
    image = torch.rand(32, 1280, generator=generator) * 2
    head.set_input_statistics(text, image, torch.ones(32, dtype=torch.bool))
    config = FusionConfig(
        name="offline-ref",
        categories=FUSION_CATEGORIES,
        backbone=BackboneSpec(type="offline", id="default"),
        text_embedding_dim=384,
        image_embedding_dim=1280,
        preprocessing=offline_preprocessing(OFFLINE_IMAGE_SIZE),
        head=head_config,
        modalities="both",
        thresholds={},
    )
    return save_fusion_checkpoint(directory, config, head)


def tiny_clip_checkpoint(directory: Path) -> Path:
    """The unit tests' tiny random CLIP and its seeded fusion checkpoint."""
    from tests.unit.test_model_backbones import build_tiny_clip
    from tests.unit.test_model_fusion_checkpoint import write_checkpoint

    clip = build_tiny_clip(directory / "clip")
    return write_checkpoint(directory / "ckpt", clip)


def stage1_outputs(device: str = "cpu", **options: Any) -> dict[str, np.ndarray]:
    """train_head on seeded embeddings: val scores of the best epoch, and the history.

    (device was added after recording, for the CUDA tests; the reference is CPU. `options`:
    more TrainConfig fields, for training options that must leave the run unchanged when off.)
    """
    from moderator.model.fusion_heads import HeadConfig
    from moderator.training.embedding_cache import Embeddings
    from moderator.training.trainer import TrainConfig, predict, train_head

    rng = np.random.default_rng(5)
    text = rng.normal(size=(96, 16)).astype(np.float32)
    image = rng.normal(size=(96, 8)).astype(np.float32)
    has_image = rng.random(96) < 0.7
    labels = np.stack([text[:, 0] * image[:, 0] > 0, text[:, 1] > 0.5], axis=1).astype(np.float32)
    everything = Embeddings(text, image * has_image[:, None], has_image)
    train, val = everything.subset(np.arange(64)), everything.subset(np.arange(64, 96))
    config = TrainConfig(
        head=HeadConfig(hidden_dim=16, projection_dim=4),
        epochs=6,
        batch_size=16,
        patience=3,
        device=device,
        **options,
    )
    head, history = train_head(train, labels[:64], val, labels[64:], config)
    return {
        "stage1/scores": predict(head, val, "both"),
        "stage1/train_loss": np.array(history.train_loss),
        "stage1/val_auroc": np.array(history.val_auroc),
    }


def stage2_outputs(directory: Path, device: str = "cpu") -> dict[str, np.ndarray]:
    """Stage 1 then one stage-2 epoch on the tiny CLIP and 24 generated rows."""
    from moderator.model.backbone_base import BackboneSpec
    from moderator.model.backbones import load_backbone
    from moderator.model.fusion_heads import HeadConfig
    from moderator.training.dataset import DatasetSpec, read_dataset
    from moderator.training.embedding_cache import compute_embeddings
    from moderator.training.finetune import finetune_encoders
    from moderator.training.synthetic import CATEGORY, write_synthetic_dataset
    from moderator.training.trainer import TrainConfig, predict, train_head
    from tests.unit.test_model_backbones import build_tiny_clip

    clip = build_tiny_clip(directory / "clip")
    data = write_synthetic_dataset(directory / "data", rows=24, seed=1)
    dataset = read_dataset(data, DatasetSpec(categories=[CATEGORY]))
    train, val = dataset.subset(np.arange(16)), dataset.subset(np.arange(16, 24))
    backbone = load_backbone(BackboneSpec(type="clip", id=str(clip)))
    config = TrainConfig(
        head=HeadConfig(hidden_dim=16, projection_dim=4),
        epochs=3,
        unfreeze=True,
        stage2_epochs=1,
        stage2_batch_size=8,
        device=device,
    )
    head, history = train_head(
        compute_embeddings(backbone, train), train.labels(),
        compute_embeddings(backbone, val), val.labels(), config,
    )  # fmt: skip
    stage1 = predict(head, compute_embeddings(backbone, val), "both")
    finetune_encoders(backbone, head, train, val, config, history)
    after = compute_embeddings(backbone, val)
    return {
        "stage2/stage1_scores": stage1,
        "stage2/scores": predict(head, after, "both"),
        "stage2/images": after.image,
        "stage2/val_auroc": np.array(history.stage2_val_auroc),
    }


def record() -> dict[str, np.ndarray]:
    import torch

    from moderator.model import load_model

    torch.set_num_threads(2)
    arrays: dict[str, np.ndarray] = {}
    arrays.update(model_outputs(load_model(None), "starter"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        arrays.update(model_outputs(load_model(offline_fusion_checkpoint(root / "o")), "offline"))
        arrays.update(model_outputs(load_model(tiny_clip_checkpoint(root / "c")), "clip"))
        arrays.update(stage1_outputs())
        arrays.update(stage2_outputs(root / "s2"))
    return {k: np.asarray(v) for k, v in arrays.items()}


def main() -> None:
    import torch

    arrays = record()
    # Lite0's convolutions round differently with another thread count or CPU kernel set
    # (up to ~1e-5 on its features): the test pins 2 threads and compares these first.
    arrays["meta/torch"] = np.array(torch.__version__)
    arrays["meta/cpu_capability"] = np.array(torch.backends.cpu.get_cpu_capability())
    np.savez_compressed(OUT, **arrays)  # type: ignore[arg-type]
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes): {sorted(arrays)}")


if __name__ == "__main__":
    main()
