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

    def node_at(self, loc: Sequence[int | str]) -> tuple[yaml.Node | None, yaml.Node | None]:
        """(key node, value node) of the deepest node on the field path `loc` that exists;
        the key is None when not even the first step exists (the value is then the root)."""
        key, node = None, self.root
        for part in loc:
            found = _child(node, part)
            if found is None:
                break
            key, node = found
        return key, node

    def line_of(self, loc: Sequence[int | str]) -> int | None:
        """1-based line of the deepest node on the field path `loc` that exists."""
        key, node = self.node_at(loc)
        mark = key if key is not None else node
        return mark.start_mark.line + 1 if mark is not None else None

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
    """(key node, node to descend into) for one step of a field path; a list item is both."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return key, value
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        item: yaml.Node = node.value[part]
        return item, item
    return None


def load_located_yaml(path: str | Path) -> LocatedYaml:
    """Parse a YAML file once, safely (no custom tags), keeping its node tree for lookups."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise YamlFileError(f"{file}: cannot read: {exc}") from exc
    try:
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(file)
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlFileError(f"{where}: invalid YAML: {problem}") from exc
    return LocatedYaml(path=file, data=data, root=root)
