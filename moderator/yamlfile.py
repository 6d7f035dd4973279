"""YAML loading that remembers where every value came from.

Errors in files that people write (settings, policies) must name the file, line
and field; pydantic gives the field path, and this module maps it to a line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError


class YamlFileError(ValueError):
    """A YAML file could not be read or does not match its model."""


@dataclass(frozen=True)
class LocatedYaml:
    path: Path
    data: Any
    root: yaml.Node | None

    def line_of(self, loc: Sequence[int | str]) -> int | None:
        """1-based line of the deepest node on the field path `loc` that exists."""
        node = self.root
        line = node.start_mark.line + 1 if node is not None else None
        for part in loc:
            found = _child(node, part)
            if found is None:
                break
            marker, node = found
            line = marker.start_mark.line + 1
        return line

    def describe(self, error: ValidationError) -> str:
        """One line per problem: ``file:line: field: message``."""
        lines = []
        for item in error.errors():
            loc = item["loc"]
            field = ".".join(str(part) for part in loc) or "(top level)"
            line = self.line_of(loc)
            where = f"{self.path}:{line}" if line is not None else str(self.path)
            lines.append(f"{where}: {field}: {item['msg']}")
        return "\n".join(lines)


def _child(node: yaml.Node | None, part: int | str) -> tuple[yaml.Node, yaml.Node] | None:
    """(node whose line to report, node to descend into) for one step of a field path."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return key, value
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        item: yaml.Node = node.value[part]
        return item, item
    return None


def load_located_yaml(path: str | Path) -> LocatedYaml:
    """Parse a YAML file safely (no custom tags) and keep its node tree for line lookups."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise YamlFileError(f"{file}: cannot read: {exc}") from exc
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(file)
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlFileError(f"{where}: invalid YAML: {problem}") from exc
    return LocatedYaml(path=file, data=data, root=root)
