"""The one YAML reader of every file a user hands aetune (search spaces, trial configs, an experiment's saved space):
YAML's safe loader, stricter where the standard lets a mistake through silently. A key given twice in one mapping is
refused (the standard keeps the last and says nothing); aliases may not expand into a document larger than
MAX_NODES values (a few hundred bytes of nested aliases otherwise unfold into gigabytes: "billion laughs")."""
from __future__ import annotations

from typing import Any

import yaml

MAX_NODES = 100_000  # values in the document once every alias is expanded; a large search space has a few hundred


class StrictYAMLError(yaml.YAMLError):
    """A document the strict loader refuses; the message names the key (or what is too large) and its line."""


class _StrictLoader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise StrictYAMLError(f"key {key!r} appears twice in one mapping (lines {seen[key]} and {line}); "
                                      "keep one")
            if isinstance(key, (str, int, float, bool)):
                seen[key] = line
        return super().construct_mapping(node, deep)


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many values the node stands for once every alias is expanded (a shared node counts each time)."""
    if id(node) in sizes:
        return sizes[id(node)]
    sizes[id(node)] = 1  # a recursive alias counts once (and the safe constructor then refuses nothing else)
    if isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(child, sizes) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, sizes) + _expanded_size(v, sizes) for k, v in node.value)
    else:
        size = 1
    sizes[id(node)] = size
    return size


def load(text: str) -> Any:
    """The document's value; yaml.YAMLError (StrictYAMLError included) when it is not one aetune accepts."""
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, {})
        if size > MAX_NODES:
            raise StrictYAMLError(f"its aliases expand to {size:,} values, over the {MAX_NODES:,} aetune reads; "
                                  "write the values out or use fewer aliases")
        return loader.construct_document(node)
    finally:
        loader.dispose()
