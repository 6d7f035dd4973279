"""Versioned wire contracts: posts and reviewers' verdicts in, decisions and dead letters out.

The pydantic models here are the source of truth; `moderator schema export` writes
the JSON Schema files under schemas/ that other teams consume, and a unit test
fails when the committed files drift from the models.
"""

from moderator.schema.deadletter import DeadLetter
from moderator.schema.decision import (
    DECISION_SCHEMA_VERSION,
    Action,
    Correction,
    Decision,
    SourceRef,
)
from moderator.schema.post import POST_SCHEMA_VERSION, Post
from moderator.schema.verdict import VERDICT_SCHEMA_VERSION, DecisionRef, Outcome, Verdict

__all__ = [
    "DECISION_SCHEMA_VERSION",
    "POST_SCHEMA_VERSION",
    "VERDICT_SCHEMA_VERSION",
    "Action",
    "Correction",
    "DeadLetter",
    "Decision",
    "DecisionRef",
    "Outcome",
    "Post",
    "SourceRef",
    "Verdict",
]
