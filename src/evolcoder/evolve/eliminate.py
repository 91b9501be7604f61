"""Elimination of failed evolutions (WizardLM / WizardCoder failure cases), as pure functions.

Each rule returns a reason string (kept in ``rejects.jsonl`` as ``reject_reason``) or None.
Instruction rules run on the evolved instruction before it is answered (no answer is paid for a
failed evolution); response rules run on the answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from evolcoder.config import Settings
from evolcoder.config import default_factory as _default

# Reasons (stable strings: stats and rejects files use them)
EMPTY_INSTRUCTION = "empty_instruction"
INSTRUCTION_TOO_LONG = "instruction_too_long"
COPIED_EVOL_PROMPT = "copied_evol_prompt"
NO_INFORMATION_GAIN = "no_information_gain"
EMPTY_RESPONSE = "empty_response"
RESPONSE_TOO_LONG = "response_too_long"
TRUNCATED_RESPONSE = "truncated_response"
SORRY_SHORT_RESPONSE = "sorry_short_response"
PUNCTUATION_STOPWORDS_ONLY = "punctuation_stopwords_only"
API_ERROR = "api_error"

REASONS = (
    EMPTY_INSTRUCTION,
    INSTRUCTION_TOO_LONG,
    COPIED_EVOL_PROMPT,
    NO_INFORMATION_GAIN,
    EMPTY_RESPONSE,
    RESPONSE_TOO_LONG,
    TRUNCATED_RESPONSE,
    SORRY_SHORT_RESPONSE,
    PUNCTUATION_STOPWORDS_ONLY,
    API_ERROR,
)

# Words of the evolving prompts that must not leak into an evolved instruction (case-insensitive).
COPY_PHRASES = (
    "#given test#",
    "#rewritten test#",
    "rewritten test",
    "given programming test question",
    "#the given prompt#",
    "#given prompt#",
    "#rewritten prompt#",
    "#created prompt#",
    "given prompt",
    "rewritten prompt",
    "created prompt",
    "prompt rewriter",
    "prompt creator",
)

# English stop words (NLTK's list, plus a few contractions' stems)
STOP_WORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "ain",
        "all",
        "am",
        "an",
        "and",
        "any",
        "are",
        "aren",
        "aren't",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "couldn",
        "couldn't",
        "d",
        "did",
        "didn",
        "didn't",
        "do",
        "does",
        "doesn",
        "doesn't",
        "doing",
        "don",
        "don't",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "hadn",
        "hadn't",
        "has",
        "hasn",
        "hasn't",
        "have",
        "haven",
        "haven't",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "isn",
        "isn't",
        "it",
        "it's",
        "its",
        "itself",
        "just",
        "ll",
        "m",
        "ma",
        "me",
        "mightn",
        "mightn't",
        "more",
        "most",
        "mustn",
        "mustn't",
        "my",
        "myself",
        "needn",
        "needn't",
        "no",
        "nor",
        "not",
        "now",
        "o",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "re",
        "s",
        "same",
        "shan",
        "shan't",
        "she",
        "she's",
        "should",
        "should've",
        "shouldn",
        "shouldn't",
        "so",
        "some",
        "such",
        "t",
        "than",
        "that",
        "that'll",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "ve",
        "very",
        "was",
        "wasn",
        "wasn't",
        "we",
        "were",
        "weren",
        "weren't",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "won",
        "won't",
        "wouldn",
        "wouldn't",
        "y",
        "you",
        "you'd",
        "you'll",
        "you're",
        "you've",
        "your",
        "yours",
        "yourself",
        "yourselves",
        "ok",
        "okay",
        "yes",
        "sure",
        "here's",
    ]
)

_TOKEN_RE = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_WORD_RE = re.compile(r"[A-Za-z0-9_']+")


def count_tokens(text: str) -> int:
    """Approximate token count (words and punctuation marks); model-independent for stats."""
    return len(_TOKEN_RE.findall(text or ""))


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", (text or "").strip().lower())


@dataclass
class EliminationSettings(Settings):
    """Thresholds of the elimination rules (``evolution.elimination``; defaults: the schema)."""

    SECTION: ClassVar[str] = "evolution.elimination"

    sorry_max_words: int = _default(SECTION, "sorry_max_words")  # "sorry" in a shorter response -> rejected
    max_instruction_tokens: int = _default(SECTION, "max_instruction_tokens")  # over-length evolved instruction
    max_response_tokens: int = _default(SECTION, "max_response_tokens")  # over-length response
    min_instruction_tokens: int = _default(SECTION, "min_instruction_tokens")  # shorter counts as empty
    reject_truncated: bool = _default(SECTION, "reject_truncated")  # reject answers cut by max_tokens
    copy_phrases_extra: list[str] = _default(SECTION, "copy_phrases_extra")


# ---------------------------------------------------------------- instruction rules


def is_empty(text: str, min_tokens: int = 1) -> bool:
    return count_tokens(text) < max(1, min_tokens) or not re.search(r"\w", text or "")


def copies_evol_prompt(instruction: str, extra: tuple[str, ...] | list[str] = ()) -> str | None:
    """The phrase of the evolving prompt the instruction copies, or None."""
    low = (instruction or "").lower()
    for phrase in (*COPY_PHRASES, *(p.lower() for p in extra)):
        if phrase in low:
            return phrase
    return None


def no_information_gain(evolved: str, parent: str) -> bool:
    """Cheap check (always on): the evolved instruction is the parent, up to case and whitespace,
    or only adds/removes punctuation. The LLM judge (optional) catches the subtler cases."""
    a, b = _norm(evolved), _norm(parent)
    if a == b:
        return True
    strip = lambda s: re.sub(r"[^\w]+", " ", s).strip()  # noqa: E731
    return strip(a) == strip(b)


def check_instruction(evolved: str, parent: str, s: EliminationSettings) -> tuple[str, str] | None:
    """(reason, detail) if the evolved instruction must be eliminated, else None."""
    if is_empty(evolved, s.min_instruction_tokens):
        return EMPTY_INSTRUCTION, f"{count_tokens(evolved)} tokens"
    n = count_tokens(evolved)
    if n > s.max_instruction_tokens:
        return INSTRUCTION_TOO_LONG, f"{n} tokens > {s.max_instruction_tokens}"
    phrase = copies_evol_prompt(evolved, s.copy_phrases_extra)
    if phrase:
        return COPIED_EVOL_PROMPT, f"contains {phrase!r}"
    if no_information_gain(evolved, parent):
        return NO_INFORMATION_GAIN, "identical to the parent instruction"
    return None


# ---------------------------------------------------------------- response rules


def sorry_and_short(response: str, max_words: int = 80) -> bool:
    return "sorry" in (response or "").lower() and len((response or "").split()) < max_words


def only_punctuation_and_stopwords(response: str) -> bool:
    words = [w.strip("'").lower() for w in _WORD_RE.findall(response or "")]
    words = [w for w in words if w]
    return all(w in STOP_WORDS for w in words)


def check_response(response: str, finish_reason: str | None, s: EliminationSettings) -> tuple[str, str] | None:
    """(reason, detail) if the response must be eliminated, else None."""
    if not (response or "").strip():
        return EMPTY_RESPONSE, "empty"
    n = count_tokens(response)
    if n > s.max_response_tokens:
        return RESPONSE_TOO_LONG, f"{n} tokens > {s.max_response_tokens}"
    if s.reject_truncated and finish_reason == "length":
        return TRUNCATED_RESPONSE, "finish_reason=length"
    if sorry_and_short(response, s.sorry_max_words):
        return SORRY_SHORT_RESPONSE, f"'sorry' in {len(response.split())} words < {s.sorry_max_words}"
    if only_punctuation_and_stopwords(response):
        return PUNCTUATION_STOPWORDS_ONLY, "only punctuation and stop words"
    return None


# ---------------------------------------------------------------- judge


def judge_says_equal(judgement: str) -> bool:
    """WizardLM's equality judge: 'Equal' means no information gain; 'Not Equal' passes."""
    low = _norm(judgement)
    if "not equal" in low or "not the same" in low or "unequal" in low:
        return False
    return bool(re.match(r"^\W*(equal|the same|same)\b", low))


def clean_evolved(text: str) -> str:
    """Light, lossless-in-meaning cleanup of an evolved instruction: strip whitespace and wrapping quotes."""
    t = (text or "").strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "\"'`" and t.count(t[0]) == 2:
        t = t[1:-1].strip()
    return t
