"""Each elimination rule of Code Evol-Instruct, as pure functions."""

from __future__ import annotations

import pytest

from evolcoder.evolve import eliminate as el

S = el.EliminationSettings()
PARENT = "Write a function that reverses a string."
GOOD_EVOLVED = "Write a function that reverses a string in place, without slicing, in O(n) time and O(1) space."
GOOD_ANSWER = (
    "```python\ndef rev(s):\n    chars = list(s)\n    i, j = 0, len(chars) - 1\n    return ''.join(chars)\n```"
)


def test_good_item_passes_both_stages():
    assert el.check_instruction(GOOD_EVOLVED, PARENT, S) is None
    assert el.check_response(GOOD_ANSWER, "stop", S) is None


# ---- instruction rules


@pytest.mark.parametrize("text", ["", "   \n ", "...", "?!", "ok"])
def test_empty_instruction(text):
    assert el.check_instruction(text, PARENT, S)[0] == el.EMPTY_INSTRUCTION


def test_over_length_instruction():
    long = "word " * 3000
    reason, detail = el.check_instruction(long, PARENT, S)
    assert reason == el.INSTRUCTION_TOO_LONG and "3000" in detail
    assert el.check_instruction(long, PARENT, el.EliminationSettings(max_instruction_tokens=5000)) is None


@pytest.mark.parametrize(
    "text",
    [
        "#Rewritten Test#\nWrite a function that reverses a string without slicing.",
        "Here is the rewritten prompt: reverse a string without slicing.",
        "The given prompt asks to reverse a string; do it without slicing.",
        "#Given Test# Write a function to reverse a string using recursion only.",
        "Rewrite the given programming test question so the string is reversed twice.",
        "#Created Prompt#: write a function that reverses each word of a sentence.",
    ],
)
def test_copied_evol_prompt_words(text):
    reason, _detail = el.check_instruction(text, PARENT, S)
    assert reason == el.COPIED_EVOL_PROMPT, (text, reason)


def test_copy_phrases_are_configurable():
    s = el.EliminationSettings(copy_phrases_extra=["as an ai"])
    text = "As an AI, write a function that reverses a string without slicing."
    assert el.check_instruction(text, PARENT, S) is None
    assert el.check_instruction(text, PARENT, s)[0] == el.COPIED_EVOL_PROMPT


def test_no_information_gain_cheap_check():
    assert el.check_instruction(PARENT, PARENT, S)[0] == el.NO_INFORMATION_GAIN
    assert el.check_instruction("  write a FUNCTION that reverses a string ", PARENT, S)[0] == el.NO_INFORMATION_GAIN
    assert el.check_instruction("Write a function, that reverses a string!", PARENT, S)[0] == el.NO_INFORMATION_GAIN


@pytest.mark.parametrize(
    "verdict,equal",
    [
        ("Equal", True),
        ("equal.", True),
        ("The same", True),
        (" Equal\n", True),
        ("Not Equal", False),
        ("not equal", False),
        ("They are not equal.", False),
        ("Unequal", False),
        ("", False),
    ],
)
def test_llm_judge_verdict(verdict, equal):
    assert el.judge_says_equal(verdict) is equal


# ---- response rules


def test_sorry_and_short_is_eliminated_but_long_sorry_is_kept():
    short = "I'm sorry, but I cannot write that function."
    assert el.check_response(short, "stop", S)[0] == el.SORRY_SHORT_RESPONSE
    long = "Sorry for the wait. " + " ".join(["Here is a careful explanation of the algorithm."] * 12) + GOOD_ANSWER
    assert len(long.split()) >= 80
    assert el.check_response(long, "stop", S) is None
    # the threshold is the paper's 80 words, configurable
    assert el.check_response(short, "stop", el.EliminationSettings(sorry_max_words=5)) is None


@pytest.mark.parametrize("text", ["...", "!!! ???", "the of and", "It is what it is.", "Yes, sure. Ok!", "- - -"])
def test_only_punctuation_and_stop_words(text):
    assert el.check_response(text, "stop", S)[0] == el.PUNCTUATION_STOPWORDS_ONLY


def test_stop_word_rule_keeps_real_words():
    assert el.check_response("Use recursion.", "stop", S) is None
    assert el.check_response("42", "stop", S) is None


@pytest.mark.parametrize("text", ["", "  \n\t"])
def test_empty_response(text):
    assert el.check_response(text, "stop", S)[0] == el.EMPTY_RESPONSE


def test_over_length_and_truncated_response():
    assert el.check_response("tok " * 9000, "stop", S)[0] == el.RESPONSE_TOO_LONG
    assert el.check_response(GOOD_ANSWER, "length", S) is None  # off by default
    assert (
        el.check_response(GOOD_ANSWER, "length", el.EliminationSettings(reject_truncated=True))[0]
        == el.TRUNCATED_RESPONSE
    )


def test_clean_evolved_strips_wrapping_quotes_only():
    assert el.clean_evolved('  "Reverse a string in place."  ') == "Reverse a string in place."
    assert el.clean_evolved('Print "hi" twice') == 'Print "hi" twice'


def test_unknown_elimination_key_is_one_line_error():
    from evolcoder.errors import EvolcoderError

    with pytest.raises(EvolcoderError, match="sorry_words"):
        el.EliminationSettings.from_dict({"sorry_words": 3})
