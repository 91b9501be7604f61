"""Raw model output -> a complete program.

``wizardcoder`` (default): WizardCoder's own process scripts, step for step (nlpxucan/WizardLM,
WizardCoder/src/process_humaneval.py, mbppplus_process_preds.py, process_mbpp.py, all run with
--add_prompt). ``evalplus``: evalplus's ``sanitize`` (the library's, evalplus.sanitize).
"""

from __future__ import annotations

import re

RESPONSE_MARK = "### Response:"


POSTPROCESS_METHODS = ("wizardcoder", "evalplus")

_FENCE = re.compile(r"```[ \t]*(?:python|py|Python|python3)?[ \t]*\n(.*?)(?:```|\Z)", re.S)


def strip_response(raw: str) -> str:
    """The model's answer: text after the last ``### Response:`` when the prompt is included
    (``gen_seq.split("### Response:")[-1]``, as the generation scripts take the completion)."""
    if RESPONSE_MARK in raw:
        raw = raw.rsplit(RESPONSE_MARK, 1)[1]
    return raw


def _cut(code: str, marker: str) -> str:
    return code[: code.index(marker)].strip() if marker in code else code


def wizardcoder_extract(
    completion: str, *, fence_end: str = "```", drop_cr: bool = True, cut_at: tuple[str, ...] = ()
) -> str:
    """The extraction shared by WizardCoder's process scripts: from the first ```` ```python ````
    (every ```` ```python ```` removed) to the next ``fence_end``, stripped; then cut at
    ``if __name__ == "__main__":``, at ``# Example usage`` and at each of ``cut_at``. Text without a
    ```` ```python ```` block is kept as it is (cuts aside), as there."""
    c = completion.replace("\r", "") if drop_cr else completion
    if "```python" in c:
        c = c[c.index("```python") :].strip().replace("```python", "")
        if fence_end in c:
            c = c[: c.index(fence_end)].strip()
    c = _cut(c, 'if __name__ == "__main__":') if '__name__ == "__main__"' in c else c
    for marker in ("# Example usage", *cut_at):
        c = _cut(c, marker)
    return c


def process_humaneval(completion: str) -> str:
    """``process_humaneval.py --add_prompt``: the completion's code (the scorer runs prompt + it)."""
    return wizardcoder_extract(completion, fence_end="```")


def process_mbppplus(completion: str) -> str:
    """``mbppplus_process_preds.py --add_prompt``: as HumanEval, but the block ends at a newline + three
    backticks, and the code is cut at the first ``assert`` (models append their own, sometimes wrong,
    tests). The result is the whole program (the scorer adds nothing that runs)."""
    return wizardcoder_extract(completion, fence_end="\n```", cut_at=("assert",))


def process_mbpp(completion: str) -> str:
    """``process_mbpp.py --add_prompt`` (original MBPP): the block ends at a newline + three backticks,
    the code is cut at ``# Test examples``; carriage returns are kept, as there."""
    return wizardcoder_extract(completion, fence_end="\n```", drop_cr=False, cut_at=("# Test examples",))


def evalplus_sanitize(answer: str, prompt: str, entry_point: str | None) -> str:
    """evalplus's ``sanitize`` (the library): the answer alone, as evalplus treats instruction models;
    a body-only answer (no definition of the entry point) is sanitised after the prompt, as evalplus
    treats direct-completion models."""
    from evalplus.sanitize import sanitize

    code = sanitize(answer, entrypoint=entry_point)
    if entry_point and not defines(code, entry_point):
        code = sanitize(prompt + answer, entrypoint=entry_point)
    return code


def extract_code(raw: str) -> str:
    """A lenient extraction (any fenced block, unclosed too) for benchmarks without a WizardCoder
    script; cut at ``__main__``/example usage."""
    text = raw.replace("\r", "")
    if "```" in text:
        m = _FENCE.search(text)
        text = m.group(1) if m else text.split("```", 2)[1] if text.count("```") >= 2 else text.replace("```", "")
    for marker in ('if __name__ == "__main__":', "if __name__ == '__main__':", "# Example usage"):
        if marker in text:
            text = text[: text.index(marker)]
    return text.rstrip() + "\n"


def defines(code: str, name: str) -> bool:
    return re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.M) is not None
