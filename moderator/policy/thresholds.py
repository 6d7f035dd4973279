"""Per-category threshold policies (policy format version 1).

Each category maps score thresholds to actions; the most severe action whose
threshold a score reaches wins. The rule engine with CEL conditions builds on
this format.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from moderator.errors import ModeratorError
from moderator.schema.decision import Action
from moderator.yamlfile import YamlFileError, load_located_yaml


class PolicyError(ModeratorError):
    """A policy file is invalid; the message names file, line and field."""


class CategoryThresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: float | None = Field(default=None, ge=0.0, le=1.0)
    review: float | None = Field(default=None, ge=0.0, le=1.0)
    block: float | None = Field(default=None, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> CategoryThresholds:
        steps = [v for v in (self.label, self.review, self.block) if v is not None]
        if steps != sorted(steps):
            raise ValueError("thresholds must not decrease from label to review to block")
        if not steps:
            raise ValueError("give at least one of label, review, block")
        return self

    def action_for(self, score: float) -> Action | None:
        for action, threshold in (
            (Action.BLOCK, self.block),
            (Action.REVIEW, self.review),
            (Action.LABEL, self.label),
        ):
            if threshold is not None and score >= threshold:
                return action
        return None


class PolicyDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    description: str = ""
    thresholds: dict[str, CategoryThresholds]


@dataclass(frozen=True, slots=True)
class PolicyResult:
    action: Action
    labels: list[str] = field(default_factory=list)
    rules_fired: list[str] = field(default_factory=list)
    shadow_rules: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ThresholdPolicy:
    name: str
    version: str
    thresholds: Mapping[str, CategoryThresholds]
    source: Path | None = None

    @property
    def categories(self) -> list[str]:
        return list(self.thresholds)

    @property
    def qualified_version(self) -> str:
        """What decisions record: ``name@version``."""
        return f"{self.name}@{self.version}"

    def decide(self, scores: Mapping[str, float]) -> PolicyResult:
        action = Action.ALLOW
        labels: list[str] = []
        fired: list[str] = []
        for category, rule in self.thresholds.items():
            hit = rule.action_for(scores.get(category, 0.0))
            if hit is None:
                continue
            labels.append(category)
            fired.append(f"{category}.{hit.value}")
            if hit.severity > action.severity:
                action = hit
        return PolicyResult(action=action, labels=labels, rules_fired=fired)

    def check_categories(self, model_categories: list[str]) -> None:
        unknown = sorted(set(self.thresholds) - set(model_categories))
        if unknown:
            where = self.source or self.name
            raise PolicyError(
                f"{where}: thresholds name categories the model does not score: {unknown}; "
                f"the model scores {model_categories}"
            )


def load_policy(path: str | Path) -> ThresholdPolicy:
    try:
        located = load_located_yaml(path)
    except YamlFileError as exc:
        raise PolicyError(str(exc)) from exc
    if not isinstance(located.data, dict):
        raise PolicyError(f"{path}:1: a policy file must be a mapping")
    try:
        document = PolicyDocument.model_validate(located.data)
    except ValidationError as exc:
        raise PolicyError(f"invalid policy:\n{located.describe(exc)}") from exc
    return ThresholdPolicy(
        name=document.name,
        version=document.version,
        thresholds=document.thresholds,
        source=Path(path),
    )
