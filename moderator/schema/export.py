"""JSON Schema files for the wire contracts, written to schemas/ by `moderator schema export`."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson

from moderator.schema.decision import DECISION_SCHEMA_VERSION, Decision
from moderator.schema.post import POST_SCHEMA_VERSION, Post
from moderator.schema.verdict import VERDICT_SCHEMA_VERSION, Verdict

DEADLETTER_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "DeadLetter",
    "description": (
        "Dead-letter record, version 1. The value is the original record's bytes, unchanged; "
        "these headers are added (UTF-8 strings)."
    ),
    "type": "object",
    "properties": {
        "moderator.reason": {"type": "string", "description": "Why the record was rejected."},
        "moderator.detail": {"type": "string", "maxLength": 500},
        "moderator.source.topic": {"type": "string"},
        "moderator.source.partition": {"type": "string", "pattern": "^[0-9]+$"},
        "moderator.source.offset": {"type": "string", "pattern": "^[0-9]+$"},
        "moderator.schema_version": {"const": "1"},
    },
    "required": [
        "moderator.reason",
        "moderator.source.topic",
        "moderator.source.partition",
        "moderator.source.offset",
        "moderator.schema_version",
    ],
}


def schema_documents() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema document."""
    from moderator.errors import ReasonCode

    deadletter = copy.deepcopy(DEADLETTER_SCHEMA)
    deadletter["properties"]["moderator.reason"]["enum"] = [r.value for r in ReasonCode]
    return {
        f"post.v{POST_SCHEMA_VERSION}.json": Post.model_json_schema(),
        f"decision.v{DECISION_SCHEMA_VERSION}.json": Decision.model_json_schema(),
        "deadletter.v1.json": deadletter,
        f"verdict.v{VERDICT_SCHEMA_VERSION}.json": Verdict.model_json_schema(),
    }


def render(document: dict[str, Any]) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def export_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, document in schema_documents().items():
        path = directory / name
        path.write_bytes(render(document))
        written.append(path)
    return written
