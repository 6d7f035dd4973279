"""Fusion heads: one contract every head runs, and the unimodal-terms property of cross fusion."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from moderator.model.checkpoint_files import load_tensors, save_tensors
from moderator.model.fusion_heads import HEADS, CrossFusionHead, FusionHead, HeadConfig, build_head

TEXT_DIM, IMAGE_DIM, OUTPUTS = 12, 20, 3


def inputs(batch: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    text = torch.randn(batch, TEXT_DIM, generator=generator)
    image = torch.randn(batch, IMAGE_DIM, generator=generator)
    has_image = torch.arange(batch) % 2 == 0
    return text, image, has_image


HEAD_CONFIGS = [
    HeadConfig(type="late", hidden_dim=16),
    HeadConfig(type="concat", hidden_dim=16),
    HeadConfig(type="cross", hidden_dim=16, projection_dim=4),
    HeadConfig(type="cross", hidden_dim=16, projection_dim=4, with_embeddings=False),
    HeadConfig(
        type="cross", hidden_dim=16, projection_dim=4, unimodal_terms=False, with_embeddings=False
    ),
]


@pytest.fixture(
    params=HEAD_CONFIGS, ids=lambda c: f"{c.type}-{c.unimodal_terms}-{c.with_embeddings}"
)
def head(request: pytest.FixtureRequest) -> FusionHead:
    torch.manual_seed(0)
    built = build_head(request.param, TEXT_DIM, IMAGE_DIM, OUTPUTS)
    built.set_input_statistics(*inputs(32, seed=1))
    return built.eval()


def test_every_head_type_is_covered() -> None:
    assert {c.type for c in HEAD_CONFIGS} == set(HEADS)


def test_output_shape_and_finite(head: FusionHead) -> None:
    logits = head(*inputs())
    assert logits.shape == (6, OUTPUTS) and torch.isfinite(logits).all()


def test_rows_without_image_ignore_the_image_embedding(head: FusionHead) -> None:
    text, image, has_image = inputs()
    changed = image.clone()
    changed[~has_image] = 1e3
    torch.testing.assert_close(head(text, image, has_image), head(text, changed, has_image))


def test_batch_rows_are_independent(head: FusionHead) -> None:
    text, image, has_image = inputs()
    full = head(text, image, has_image)
    torch.testing.assert_close(full[2:3], head(text[2:3], image[2:3], has_image[2:3]))


def test_gradient_reaches_every_parameter(head: FusionHead) -> None:
    head.train()
    text, image, _ = inputs()
    head(text, image, torch.ones(6, dtype=torch.bool)).sum().backward()
    for name, parameter in head.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_safetensors_round_trip(head: FusionHead, tmp_path: Path) -> None:
    save_tensors(tmp_path / "head.safetensors", head.state_dict())
    again = build_head(head.config, TEXT_DIM, IMAGE_DIM, OUTPUTS)
    again.load_state_dict(load_tensors(tmp_path / "head.safetensors"), strict=True)
    torch.testing.assert_close(head(*inputs()), again.eval()(*inputs()))


def test_seeded_init_is_reproducible(head: FusionHead) -> None:
    torch.manual_seed(5)
    first = build_head(head.config, TEXT_DIM, IMAGE_DIM, OUTPUTS).state_dict()
    torch.manual_seed(5)
    second = build_head(head.config, TEXT_DIM, IMAGE_DIM, OUTPUTS).state_dict()
    for key, value in first.items():
        torch.testing.assert_close(value, second[key])


def _interactions(
    head: CrossFusionHead, text: torch.Tensor, has_image: torch.Tensor
) -> torch.Tensor:
    """The flattened matrix the cross head's MLP sees."""
    captured: list[torch.Tensor] = []
    # On the MLP's first layer: the head runs the MLP's layers itself (logits_and_features).
    hook = head.mlp[0].register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    head(text, torch.randn(len(text), IMAGE_DIM), has_image)
    hook.remove()
    return captured[0]


def test_plain_outer_product_is_blind_without_an_image() -> None:
    config = HeadConfig(
        type="cross", hidden_dim=8, projection_dim=4, unimodal_terms=False, with_embeddings=False
    )
    head = build_head(config, TEXT_DIM, IMAGE_DIM, 1).eval()
    assert isinstance(head, CrossFusionHead)
    text = torch.randn(3, TEXT_DIM)
    assert _interactions(head, text, torch.zeros(3, dtype=torch.bool)).abs().sum() == 0


def test_unimodal_terms_keep_the_caption_projection() -> None:
    config = HeadConfig(type="cross", hidden_dim=8, projection_dim=4, with_embeddings=False)
    head = build_head(config, TEXT_DIM, IMAGE_DIM, 1).eval()
    assert isinstance(head, CrossFusionHead)
    text = torch.randn(3, TEXT_DIM)
    matrix = _interactions(head, text, torch.zeros(3, dtype=torch.bool)).view(3, 5, 5)
    projected = torch.nn.functional.normalize(head.text_projection(text), dim=1)
    # Without an image the last column is [p_text, 1] and everything else is zero.
    torch.testing.assert_close(matrix[:, :4, 4], projected)
    assert matrix[:, :, :4].abs().sum() == 0 and (matrix[:, 4, 4] == 1).all()


def test_default_cross_head_also_sees_the_concat_input() -> None:
    """The default (with_embeddings) feeds the MLP [interactions, text, image, has_image]."""
    head = build_head(HeadConfig(hidden_dim=8, projection_dim=4), TEXT_DIM, IMAGE_DIM, 1).eval()
    assert isinstance(head, CrossFusionHead)
    text, image, has_image = inputs(3)
    features = _interactions(head, text, has_image)
    assert features.shape == (3, 25 + TEXT_DIM + IMAGE_DIM + 1)
    t, _, present = head.standardise(text, image, has_image)
    torch.testing.assert_close(features[:, 25 : 25 + TEXT_DIM], t)
    torch.testing.assert_close(features[:, -1:], present)
