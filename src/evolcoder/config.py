"""The configuration schema: the one place of every key's type, documentation and default.

``src/evolcoder/data/config.schema.yaml`` (JSON Schema, draft 2020-12) is what
:func:`evolcoder.workflow.check_config` (at every Snakefile parse) validates a run's config against (filling
in the defaults), and what the stages' settings classes
take their defaults from (:func:`defaults`), so a default is written once. The benchmark lists of the
schema (``$defs/benchmark``) are filled in from the adapter registry when the config is validated
(:func:`schema`), so adding a benchmark does not touch the schema.

The schema is not part of any stage's code hash (:mod:`evolcoder.codehash`): what it gives a stage
(the defaults) reaches the stage through its config slice, a tracked param of the rule.

:class:`Settings` is the base of the stages' settings dataclasses: one ``from_dict`` that rejects
unknown keys, naming them and where they were.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Mapping
from importlib import resources
from typing import Any, ClassVar

import yaml

from evolcoder.errors import EvolcoderError


@functools.lru_cache(maxsize=1)
def _raw_schema() -> dict:
    text = (resources.files("evolcoder") / "data" / "config.schema.yaml").read_text(encoding="utf-8")
    # libyaml's loader where PyYAML has it: the pure-Python one takes most of a second on this file,
    # at every Snakefile parse and every stage's start
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def schema(benchmarks: Mapping[str, dict] | list[str]) -> dict:
    """The schema, with ``$defs/benchmark`` restricted to ``benchmarks`` (the registry's names, or its
    :func:`evolcoder.benchmarks.describe`: passed in, so that the stages' settings, which read their
    defaults here, do not depend on the benchmark adapters) and, given the registry's description, one
    block of ``evaluation.benchmark_options`` per benchmark that declares options."""
    out = copy.deepcopy(_raw_schema())
    out["$defs"]["benchmark"]["enum"] = list(benchmarks)
    if isinstance(benchmarks, Mapping):
        block = out["properties"]["evaluation"]["properties"]["benchmark_options"]
        for name, info in benchmarks.items():
            if info.get("options"):
                block["properties"][name] = {
                    "type": "object",
                    "default": {},
                    "additionalProperties": False,
                    "description": f"Options of {name} (its adapter's `options`).",
                    "properties": copy.deepcopy(info["options"]),
                }
    return out


def _resolve(node: dict) -> dict:
    ref = node.get("$ref")
    if ref:
        name = ref.rsplit("/", 1)[-1]
        merged = dict(_raw_schema()["$defs"][name])
        merged.update({k: v for k, v in node.items() if k != "$ref"})
        return merged
    return node


def section(path: str) -> dict:
    """The schema of a config section: ``"evaluation.execution"`` -> its ``{type, properties, ...}``."""
    node = _raw_schema()
    for part in [p for p in path.split(".") if p]:
        try:
            node = _resolve(node["properties"][part])
        except KeyError:
            raise KeyError(f"config schema has no section {path!r}") from None
    return node


def defaults(path: str) -> dict[str, Any]:
    """The schema's defaults of a section's keys (those that have one), fresh copies."""
    props = section(path).get("properties", {})
    return {k: copy.deepcopy(v["default"]) for k, v in props.items() if "default" in _resolve(v)}


def default_factory(path: str, key: str):
    """A dataclass field default from the schema (``field(default_factory=...)`` for lists/dicts)."""
    value = defaults(path)[key]
    if isinstance(value, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(value))
    return dataclasses.field(default=value)


class Settings:
    """Base of a stage's settings dataclass.

    ``SECTION``: the config section the settings come from (their defaults are the schema's, see
    :func:`defaults`); ``WHERE``: how errors name it (default: the section). ``from_dict`` rejects
    unknown keys with their names, builds nested settings (fields whose type is another
    :class:`Settings`), then calls :meth:`check`.
    """

    SECTION: ClassVar[str] = ""
    WHERE: ClassVar[str] = ""
    NESTED: ClassVar[dict[str, type]] = {}

    @classmethod
    def where(cls) -> str:
        return cls.WHERE or cls.SECTION or cls.__name__

    @classmethod
    def known_keys(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, d: dict | None):
        if d is not None and not isinstance(d, dict):
            raise EvolcoderError(f"{cls.where()}: expected a mapping, got {type(d).__name__}")
        d = copy.deepcopy(dict(d or {}))
        known = cls.known_keys()
        unknown = sorted(set(d) - known)
        if unknown:
            raise EvolcoderError(
                f"{cls.where()}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        for name, sub in cls.NESTED.items():
            if name in d and (d[name] is None or isinstance(d[name], dict)):
                d[name] = sub.from_dict(d[name])
        try:
            s = cls(**d)  # type: ignore[call-arg]
        except TypeError as exc:
            raise EvolcoderError(f"{cls.where()}: {exc}") from None
        s.check()
        return s

    def check(self) -> None:
        """Validate values after construction (raise :class:`EvolcoderError`); nothing by default."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)  # type: ignore[call-overload]
