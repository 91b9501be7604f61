"""Evolution methods as data: one template file per method under ``evolcoder/templates/evol/``.

A template is the full prompt sent to the evolver LLM, with ``{instruction}`` standing for the
instruction being evolved (its Alpaca ``input``, when present, is appended to it). Nothing else in the
template is interpreted, so templates may contain braces freely.

Method sets:
- ``code``: the five Code Evol-Instruct methods of WizardCoder (the default);
- ``depth``: WizardLM's in-depth methods (add constraints, deepening, concretizing, increase
  reasoning steps, complicate input);
- ``breadth``: WizardLM's in-breadth evolution (a new, rarer prompt in the same domain).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources

from evolcoder.errors import EvolcoderError

CODE_METHODS = ("add_constraints", "replace_requirement", "add_reasoning_steps", "erroneous_code", "complexity")
DEPTH_METHODS = (
    "general_add_constraints",
    "general_deepening",
    "general_concretizing",
    "general_reasoning_steps",
    "general_complicate_input",
)
BREADTH_METHODS = ("general_breadth",)
ALL_METHODS = CODE_METHODS + DEPTH_METHODS + BREADTH_METHODS

# The paper: the first four methods equally, higher-complexity requirements "rarely".
PRESETS: dict[str, dict[str, float]] = {
    "code": {
        "add_constraints": 1.0,
        "replace_requirement": 1.0,
        "add_reasoning_steps": 1.0,
        "erroneous_code": 1.0,
        "complexity": 0.25,
    },
    "depth": {m: 1.0 for m in DEPTH_METHODS},
    "breadth": {"general_breadth": 1.0},
    "wizardlm": {**{m: 1.0 for m in DEPTH_METHODS}, "general_breadth": 1.0},
}


@dataclass(frozen=True)
class Method:
    name: str
    template: str

    def render(self, instruction: str, input_: str = "") -> str:
        given = instruction.strip()
        if input_ and input_.strip():
            given = f"{given}\n{input_.strip()}"
        return self.template.replace("{instruction}", given)


@cache
def load_template(name: str) -> str:
    """Text of ``templates/evol/<name>.txt`` (package data, read with importlib.resources)."""
    path = resources.files("evolcoder").joinpath("templates", "evol", f"{name}.txt")
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EvolcoderError(f"evolution template {name!r} not found (expected templates/evol/{name}.txt)") from None


def load_method(name: str) -> Method:
    if name not in ALL_METHODS:
        raise EvolcoderError(f"unknown evolution method {name!r}; known: {', '.join(ALL_METHODS)}")
    return Method(name, load_template(name))


def normalise_weights(methods: Mapping[str, float] | str | None) -> dict[str, float]:
    """``evolution.methods`` -> {method: weight > 0}. Accepts a weight mapping or a preset name."""
    if methods is None:
        methods = "code"
    if isinstance(methods, str):
        if methods not in PRESETS:
            raise EvolcoderError(f"evolution.methods: unknown preset {methods!r}; known: {', '.join(PRESETS)}")
        methods = PRESETS[methods]
    if not isinstance(methods, Mapping):
        raise EvolcoderError("evolution.methods: expected a mapping {method: weight} or a preset name")
    out: dict[str, float] = {}
    for name, w in methods.items():
        if name not in ALL_METHODS:
            raise EvolcoderError(f"evolution.methods: unknown method {name!r}; known: {', '.join(ALL_METHODS)}")
        try:
            w = float(w)
        except (TypeError, ValueError):
            raise EvolcoderError(f"evolution.methods.{name}: weight must be a number, got {w!r}") from None
        if w < 0:
            raise EvolcoderError(f"evolution.methods.{name}: weight must be >= 0, got {w}")
        if w > 0:
            out[name] = w
    if not out:
        raise EvolcoderError("evolution.methods: at least one method needs a positive weight")
    return out


def item_rng(seed: int, round_: int, parent_id: str) -> random.Random:
    """RNG of one item in one round: a pure function of (seed, round, parent id).

    Independent of the pool's order and size, so reruns, resumes and subsets choose the same methods.
    """
    digest = hashlib.sha256(f"{seed}:{round_}:{parent_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def choose_method(weights: Mapping[str, float], rng: random.Random) -> str:
    names = sorted(weights)  # sorted: independent of the mapping's order
    return rng.choices(names, weights=[weights[n] for n in names], k=1)[0]


def request_seed(seed: int, round_: int, parent_id: str, purpose: str) -> int:
    """Per-request sampling seed sent to endpoints that honour ``seed`` (OpenAI, vLLM)."""
    digest = hashlib.sha256(f"{seed}:{round_}:{parent_id}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def evolved_id(parent_id: str, method: str, round_: int) -> str:
    return f"r{round_}-" + hashlib.sha256(f"{parent_id}|{method}|{round_}".encode()).hexdigest()[:12]
