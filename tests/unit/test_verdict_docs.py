"""docs/reviewers.md shows real records: its verdict examples validate as the contract, and
the corrected decision and training row it shows are what the consumer makes of them."""

from __future__ import annotations

import json
import re
from typing import Any

from moderator.schema import Decision, SourceRef, Verdict
from moderator.verdicts.plan import corrected_decision, training_row
from tests.paths import REPO

DOC = REPO / "docs" / "reviewers.md"


def _json_blocks() -> list[dict[str, Any]]:
    blocks = re.findall(r"```json\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    return [json.loads(block) for block in blocks]


def test_the_documented_records_are_what_the_consumer_makes() -> None:
    confirmed_json, appeal_json, correction_json, row_json = _json_blocks()
    confirmed = Verdict.model_validate(confirmed_json)
    appeal = Verdict.model_validate(appeal_json)
    assert appeal.overturns and appeal.appeal_id is not None

    Decision.model_validate(correction_json)
    source = SourceRef.model_validate(correction_json["source"])
    made = corrected_decision(appeal, source)
    assert made is not None
    # Fields added to the decision contract later may be missing from the doc, never differ.
    assert {key: made[key] for key in correction_json} == correction_json

    row, _ = training_row(confirmed)
    assert row == row_json
