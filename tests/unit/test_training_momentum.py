"""Momentum distillation (moderator/training/momentum.py, ALBEF's MoD) in stage 1.

Off (alpha 0) gives exactly the results recorded before MoD existed; the EMA update, the soft
targets, the ramp and the distilled ITC loss are what their formulas say on hand-computed
cases; a head trained with MoD on generated two-modality embeddings still learns, is seeded and
keeps the head format; bad values are refused; the options are recorded in the checkpoint only
when on.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from typer.testing import CliRunner

from moderator.model.fusion_heads import build_head
from moderator.training.dataset import DatasetSpec
from moderator.training.embedding_cache import Embeddings
from moderator.training.errors import TrainingDataError
from moderator.training.frame_training import refuse_unsupported
from moderator.training.itc import distilled_itc_loss, itc_loss
from moderator.training.momentum import MomentumHead, ramped_alpha, soft_labels
from moderator.training.splits import load_splits, provenance
from moderator.training.synthetic import CATEGORY, write_synthetic_dataset
from moderator.training.trainer import TrainConfig, train_head
from tests.data import record_fp32_reference as reference
from tests.unit.test_training_pipeline import cli_app
from tests.unit.test_training_rgcl import TINY, fit


def test_off_gives_the_results_recorded_before_momentum_distillation() -> None:
    """Switched off explicitly, a run gives the numbers recorded before MoD existed."""
    with np.load(reference.OUT) as recorded:
        for key, value in reference.stage1_outputs(distill_alpha=0.0, momentum=0.995).items():
            np.testing.assert_allclose(value, recorded[key], rtol=1e-6, atol=1e-6, err_msg=key)


def test_ema_update_is_the_formula() -> None:
    torch.manual_seed(0)
    head = build_head(TINY, 3, 2, 1)
    head.set_input_statistics(torch.randn(8, 3), torch.randn(8, 2), torch.ones(8, dtype=torch.bool))
    head.train()
    momentum = MomentumHead(head, 0.75)
    assert not momentum.model.training and head.training  # the copy runs without dropout
    for copied, original in zip(
        momentum.model.state_dict().values(), head.state_dict().values(), strict=True
    ):
        assert torch.equal(copied, original)  # starts as the head
    assert all(not p.requires_grad for p in momentum.model.parameters())
    with torch.no_grad():
        for p in momentum.model.parameters():
            p.fill_(1.0)
        for p in head.parameters():
            p.fill_(2.0)
    momentum.update(head)  # 0.75 * 1 + 0.25 * 2
    assert all(torch.all(p == 1.25) for p in momentum.model.parameters())
    with torch.no_grad():
        for p in head.parameters():
            p.fill_(-3.0)
    momentum.update(head)  # 0.75 * 1.25 + 0.25 * -3
    assert all(torch.all(p == 0.1875) for p in momentum.model.parameters())
    assert all(torch.all(p == -3.0) for p in head.parameters())  # the head is left alone
    # Buffers (the input statistics) are the head's, not averaged.
    torch.testing.assert_close(momentum.model.text_mean, head.text_mean)


def test_soft_labels_and_ramp() -> None:
    labels = torch.tensor([[1.0], [0.0]])
    logits = torch.tensor([[0.0], [math.log(3.0)]])  # sigmoid: 0.5, 0.75
    targets = soft_labels(labels, logits, 0.4)
    torch.testing.assert_close(targets, torch.tensor([[0.8], [0.3]]))
    assert torch.equal(soft_labels(labels, logits, 0.0), labels)
    # Linear over the first epoch's 4 steps, then alpha.
    ramp = [ramped_alpha(0.4, step, 4) for step in range(6)]
    assert ramp == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.4])


def test_distilled_itc_by_hand() -> None:
    # Two pairs whose projections are the unit vectors: the head's similarities are the identity;
    # the momentum head's image projections are swapped, so it says text 0 goes with image 1.
    text = torch.eye(2)
    image = torch.eye(2)
    momentum = (torch.eye(2), torch.eye(2).flip(0))
    everyone = torch.ones(2, dtype=torch.bool)
    tau = torch.tensor(1.0)
    # Momentum similarities [[0, 1], [1, 0]] → softmax rows (1/(1+e), e/(1+e)) in both
    # directions; targets (1-a)·I + a·that. Head log-softmax rows: diagonal 1 - log(1+e),
    # off-diagonal -log(1+e).
    a = 0.5
    off = math.e / (1 + math.e)
    diagonal_target, off_target = (1 - a) + a * (1 - off), a * off
    per_row = -(diagonal_target * (1 - math.log(1 + math.e)) + off_target * -math.log(1 + math.e))
    loss = distilled_itc_loss(text, image, everyone, tau, momentum, a)
    assert float(loss) == pytest.approx(per_row, abs=1e-6)
    # alpha 0 is the plain loss; rows without an image take no part.
    generator = torch.Generator().manual_seed(3)
    t, i = torch.randn(6, 4, generator=generator), torch.randn(6, 4, generator=generator)
    m = (torch.randn(6, 4, generator=generator), torch.randn(6, 4, generator=generator))
    has_image = torch.tensor([True, True, False, True, False, True])
    tau = torch.tensor(0.1)
    plain = itc_loss(t, i, has_image, tau)
    assert float(distilled_itc_loss(t, i, has_image, tau, m, 0.0)) == pytest.approx(float(plain))
    kept = has_image.nonzero(as_tuple=True)[0]
    subset = distilled_itc_loss(
        t[kept], i[kept], torch.ones(4, dtype=torch.bool), tau, (m[0][kept], m[1][kept]), 0.4
    )
    assert float(distilled_itc_loss(t, i, has_image, tau, m, 0.4)) == pytest.approx(float(subset))


def test_training_with_momentum_distillation_learns() -> None:
    # The XOR label needs both sides (tests/unit/test_training_rgcl.py): 0.999 without MoD.
    auroc, _ = fit(distill_alpha=0.4)
    assert auroc >= 0.9


def _small_run(**options: Any) -> dict[str, torch.Tensor]:
    generator = np.random.default_rng(0)
    text = generator.normal(size=(24, 3)).astype(np.float32)
    image = generator.normal(size=(24, 2)).astype(np.float32)
    train = Embeddings(text, image, np.ones(24, dtype=bool))
    labels = (text[:, :1] > 0).astype(np.float32)
    config = TrainConfig(head=TINY, epochs=3, batch_size=8, device="cpu", **options)
    head, _ = train_head(train, labels, train, labels, config)
    return head.state_dict()


def test_changes_training_is_seeded_and_keeps_the_head_format() -> None:
    plain = _small_run()
    # With ITC too: the distilled ITC path; its temperature and the copy stay out of the head.
    distilled = _small_run(distill_alpha=0.4, itc_weight=0.5)
    assert list(distilled) == list(plain)  # no momentum copy in the saved head
    assert any(not torch.equal(distilled[k], plain[k]) for k in plain)  # the targets count
    again = _small_run(distill_alpha=0.4, itc_weight=0.5)
    assert all(torch.equal(again[k], distilled[k]) for k in distilled)  # seeded


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"distill_alpha": -0.1}, "distill_alpha"),
        ({"distill_alpha": 1.5}, "distill_alpha"),
        ({"distill_alpha": 0.4, "momentum": 1.0}, "momentum"),
        ({"distill_alpha": 0.4, "momentum": 0.0}, "momentum"),
        ({"momentum": 0.9}, "distill_alpha"),  # momentum alone would be silently ignored
    ],
)
def test_bad_values_are_refused(options: dict[str, float], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        TrainConfig(**options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--distill-alpha", "2"], "distill_alpha"),
        (["--distill-alpha", "0.4", "--momentum", "1"], "momentum"),
        (["--distill-alpha", "0.4", "--architecture", "visualbert"], "--distill-alpha"),
    ],
)
def test_cli_validates_the_options(tmp_path: Any, options: list[str], message: str) -> None:
    result = CliRunner().invoke(
        cli_app(), ["train", str(tmp_path / "none.jsonl"), "--out", str(tmp_path), *options]
    )
    assert result.exit_code == 2
    assert message in result.output


def test_frame_rows_refuse_it() -> None:
    with pytest.raises(TrainingDataError, match="--distill-alpha"):
        refuse_unsupported(TrainConfig(distill_alpha=0.4), "max")
    refuse_unsupported(TrainConfig(), "max")  # off: accepted


def test_recorded_in_the_provenance_only_when_on(tmp_path: Path) -> None:
    data = write_synthetic_dataset(tmp_path, 20, seed=0)
    trainings = []
    for alpha in (0.0, 0.4):
        config = TrainConfig(val_fraction=0.25, distill_alpha=alpha)
        splits = load_splits(data, DatasetSpec(categories=[CATEGORY]), None, config)
        trainings.append(provenance(data, splits, config, 0, 1))
    # Off, nothing is added: runs without MoD write the files they always did.
    assert "momentum_distillation" not in trainings[0]
    assert trainings[1]["momentum_distillation"] == {"alpha": 0.4, "momentum": 0.995}
