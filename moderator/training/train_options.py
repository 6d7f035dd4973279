"""Option types of `moderator train` (moderator/training/cli.py) for stage 1's extra losses
(RGCL, ITC, momentum distillation) and the kNN vote. Here so cli.py stays readable."""

from __future__ import annotations

from typing import Annotated

import typer

RgclWeight = Annotated[
    float,
    typer.Option(help="Stage 1: weight of the retrieval-guided contrastive loss (RGCL); 0 = off."),
]
RgclNegatives = Annotated[int, typer.Option(help="RGCL: hard negatives retrieved per example.")]
RgclTemperature = Annotated[float, typer.Option(help="RGCL: temperature of the InfoNCE loss.")]

KnnVoteWeight = Annotated[
    float,
    typer.Option(
        help="Share of the kNN vote of the training rows in the served score (RGCL's "
        "inference); 0 = the head alone. Add examples later with `moderator neighbours add`."
    ),
]
KnnK = Annotated[int, typer.Option(help="kNN vote: nearest examples that vote.")]
KnnTemperature = Annotated[
    float, typer.Option(help="kNN vote: votes weigh softmax(cosine / temperature).")
]
ItcWeight = Annotated[
    float,
    typer.Option(
        help="Stage 1: weight of the image-text contrastive loss (ALBEF's ITC) on the cross "
        "head's text and image projections; 0 = off."
    ),
]
Stage2ItcWeight = Annotated[
    float,
    typer.Option(
        help="Stage 2 (--unfreeze): weight of the image-text contrastive loss on the cross "
        "head's projections of the fine-tuning encoders' embeddings; 0 = off."
    ),
]
DistillAlpha = Annotated[
    float,
    typer.Option(
        help="Stage 1: ALBEF's momentum distillation; targets become (1-A)*label + A*the "
        "momentum head's prediction (ITC's too), A ramped up over the first epoch; 0 = off "
        "(ALBEF: 0.4)."
    ),
]
Momentum = Annotated[
    float, typer.Option(help="Momentum distillation: EMA factor of the momentum head.")
]
ObjectTags = Annotated[
    int,
    typer.Option(
        help="Join each caption to the names of its image's top K ImageNet classes (OSCAR's "
        "object tags; offline backbone, frozen encoders); 0 = off."
    ),
]
