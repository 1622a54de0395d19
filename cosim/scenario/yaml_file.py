"""Scenario YAML read safely: plain data (dicts, lists, strings, numbers, booleans, null) with the
line of every key, within stated limits (``docs/hostile-input.md``).

A scenario may come from elsewhere. YAML can build objects from tags (``!!python/name:…``),
nest without end, and multiply one anchored block through aliases (681 bytes that expand to
billions of values). Here:

- the file holds at most ``MAX_BYTES``;
- collections nest at most ``MAX_DEPTH`` deep (checked on the event stream, before the nodes are
  composed, so a deep file neither recurses nor scans for long);
- the data, aliases expanded, holds at most ``MAX_VALUES`` values (counted while converting, so a
  bomb stops at the limit);
- only the standard tags of plain data are read: null, bool, int, float, str, seq, map (dates
  stay text); any other tag, a merge key (``<<``) or a key that is not a scalar is an error.

Every refusal is a ``ScenarioError`` with the file, the line and what to do.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from cosim.errors import Problem, ScenarioError

MAX_BYTES = 1024**2
MAX_DEPTH = 32
MAX_VALUES = 100_000
_STANDARD = "tag:yaml.org,2002:"
TAGS = {_STANDARD + t for t in ("null", "bool", "int", "float", "str", "seq", "map")}


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float (YAML 1.1 wants ``1.0e-3``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                |\.[0-9_]+(?:[eE][-+][0-9]+)?
                |[-+]?\.(?:inf|Inf|INF)
                |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))
# a date such as ``2026-05-01`` stays the text it is (descriptions, names)
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _STANDARD + "timestamp"]
    for first, resolvers in _Loader.yaml_implicit_resolvers.items()}


class _TooMuch(Exception):
    def __init__(self, node: yaml.Node):
        self.node = node


def read_yaml(text: str, file: str | None) -> tuple[Any, dict[tuple, int]]:
    """Parse YAML; returns plain data and the line (1-based) of every key path."""
    def refuse(message: str, line: int | None, hint: str) -> ScenarioError:
        return ScenarioError(Problem(message, file=file, line=line, hint=hint))

    size = len(text.encode("utf-8"))
    if size > MAX_BYTES:
        raise refuse(f"the file holds {size:,} bytes, more than the limit of {MAX_BYTES:,}",
                     None, "a scenario is a short text; put member tables in a CSV file "
                           "(cohort: {method: table})")
    try:
        _check_depth(text, file)
        loader = _Loader(text)
        node = loader.get_single_node()
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise refuse(f"not valid YAML: {getattr(error, 'problem', None) or error}",
                     mark.line + 1 if mark else None,
                     "check indentation and that every 'key: value' has a space after the "
                     "colon") from None
    lines: dict[tuple, int] = {}
    problems: list[Problem] = []
    budget = [MAX_VALUES]

    def scalar(node: yaml.Node) -> Any:
        if node.tag not in TAGS:
            raise _Refused(node, f"the tag '{_short(node.tag)}' is not allowed",
                           "a scenario holds plain data: text, numbers, true/false, lists, "
                           "mappings")
        try:
            return loader.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, OverflowError):
            kind = node.tag.replace(_STANDARD, "")
            raise _Refused(node, f"cannot read {_cut(node.value)!r} as {kind}",
                           "write a plain number (at most 4300 digits) or text") from None

    def convert(node: yaml.Node, path: tuple) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise _TooMuch(node)
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            if node.tag != _STANDARD + "map":
                raise _Refused(node, f"the tag '{_short(node.tag)}' is not allowed",
                               "write a plain mapping")
            out = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise _Refused(key_node, "a key must be a plain name or number, not a list "
                                   "or a mapping", "write 'name: value'")
                if key_node.tag == _STANDARD + "merge":
                    raise _Refused(key_node, "merge keys ('<<') are not supported",
                                   "write the keys out (anchors and aliases of values work)")
                key = scalar(key_node)
                if key in out:
                    problems.append(Problem(f"'{key}' appears twice", file=file,
                                            line=key_node.start_mark.line + 1,
                                            key=".".join(map(str, path + (key,))),
                                            hint="YAML keeps only the last one; merge them"))
                out[key] = convert(value_node, path + (key,))
                lines[path + (key,)] = key_node.start_mark.line + 1
            return out
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _STANDARD + "seq":
                raise _Refused(node, f"the tag '{_short(node.tag)}' is not allowed",
                               "write a plain list")
            return [convert(item, path + (i,)) for i, item in enumerate(node.value)]
        return scalar(node)

    try:
        data = convert(node, ()) if node is not None else None
    except _TooMuch as stop:
        raise refuse(f"the data expands to more than {MAX_VALUES:,} values (aliases of "
                     "aliases?)", stop.node.start_mark.line + 1,
                     "refused as unsafe; write the values out or use fewer aliases") from None
    except _Refused as refused:
        raise refuse(refused.message, refused.node.start_mark.line + 1, refused.hint) from None
    if problems:
        raise ScenarioError(problems)
    return data, lines


class _Refused(Exception):
    def __init__(self, node: yaml.Node, message: str, hint: str):
        self.node, self.message, self.hint = node, message, hint


def _cut(text: str, length: int = 40) -> str:
    return text if len(text) <= length else text[:length - 3] + "..."


def _short(tag: str) -> str:
    text = tag.replace(_STANDARD, "!!")
    return text if len(text) <= 60 else text[:57] + "..."


def _check_depth(text: str, file: str | None) -> None:
    """Refuse nesting deeper than ``MAX_DEPTH`` from the event stream, stopping right there."""
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise ScenarioError(Problem(
                    f"lists and mappings nest more than {MAX_DEPTH} levels deep", file=file,
                    line=event.start_mark.line + 1,
                    hint="refused as unsafe; a scenario nests a few levels"))
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
