"""The chart's serving.classifier.semantic values reach the Classifier app's args (rendered
with the real helm binary; no cluster, no Ray)."""

from __future__ import annotations

import yaml

from moderator.serving_settings import ClassifierArgs
from tests.helm.chart_render import CHART, one, render

MINIMAL = CHART / "ci" / "minimal-values.yaml"


def test_semantic_bank_values_become_classifier_args() -> None:
    sets = [
        "serving.classifier.semantic.banks={/banks/known_memes,/banks/known_spam}",
        "serving.classifier.semantic.exactMaxEntries=5000",
        "serving.classifier.semantic.nprobe=8",
    ]
    rayservice = one(render([MINIMAL], sets), "RayService")
    (app,) = yaml.safe_load(rayservice["spec"]["serveConfigV2"])["applications"]
    args = ClassifierArgs.model_validate(app["args"])
    assert [str(p) for p in args.semantic.banks] == ["/banks/known_memes", "/banks/known_spam"]
    assert (args.semantic.exact_max_entries, args.semantic.nprobe) == (5000, 8)


def test_by_default_no_banks_are_loaded() -> None:
    rayservice = one(render([MINIMAL]), "RayService")
    (app,) = yaml.safe_load(rayservice["spec"]["serveConfigV2"])["applications"]
    assert ClassifierArgs.model_validate(app["args"]).semantic.banks == []
