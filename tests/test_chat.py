"""prompt_template chat: rendering with the tokenizer's own chat template, assistant-only labels token by
token, multi-turn records, packing, the generation prompt = the training prefix, and the one-line stop for a
tokenizer without a template. SmolLM2-135M-Instruct's tokenizer (no model weights are loaded)."""

from __future__ import annotations

import functools
import json
import operator
import shutil

import pytest

from evolcoder import chat
from evolcoder.errors import DataError, EvolcoderError
from evolcoder.train.data import IGNORE_INDEX, Tokenized, TrainDataset, load_tokenized, save_tokenized


@pytest.fixture(scope="module")
def smol_dir():
    from evolcoder.models import resolve

    return resolve("smollm2-135m-instruct")


@pytest.fixture(scope="module")
def tok(smol_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smol_dir)


def labels_of(ids, mask):
    return [t if m else IGNORE_INDEX for t, m in zip(ids, mask, strict=True)]


def test_single_turn_labels_are_exactly_the_answer_and_its_end_of_turn(tok):
    rec = {"instruction": "Add two numbers.", "input": "a=1, b=2", "output": "def add(a, b):\n    return a + b"}
    msgs = chat.record_messages(rec, system_prompt="You write Python.")
    assert [m["role"] for m in msgs] == ["system", "user", "assistant"]
    assert msgs[1]["content"] == "Add two numbers.\n\na=1, b=2"
    ids, mask = chat.encode_conversation(tok, msgs)
    prefix = chat.generation_prompt(tok, msgs[1]["content"], "You write Python.")
    eot = tok.convert_tokens_to_ids("<|im_end|>")
    p_ids = tok(prefix, add_special_tokens=False)["input_ids"]
    a_ids = tok(rec["output"], add_special_tokens=False)["input_ids"]
    nl = tok("\n", add_special_tokens=False)["input_ids"]
    # token by token: the rendered prefix, the answer, <|im_end|>, the template's newline
    assert ids == p_ids + a_ids + [eot] + nl
    assert labels_of(ids, mask) == [IGNORE_INDEX] * len(p_ids) + a_ids + [eot] + [IGNORE_INDEX] * len(nl)
    assert chat.end_of_turn_id(tok) == eot == tok.eos_token_id


def test_every_assistant_turn_of_a_multi_turn_record_is_trained(tok):
    rec = {
        "messages": [
            {"role": "user", "content": "Write f."},
            {"role": "assistant", "content": "def f(): pass"},
            {"role": "user", "content": "Now make it return 1."},
            {"role": "assistant", "content": "def f():\n    return 1"},
        ]
    }
    ids, mask = chat.encode_conversation(tok, chat.record_messages(rec))
    runs, cur = [], []
    for t, m in zip(ids, mask, strict=True):
        if m:
            cur.append(t)
        elif cur:
            runs.append(cur)
            cur = []
    assert [tok.decode(r) for r in runs] == ["def f(): pass<|im_end|>", "def f():\n    return 1<|im_end|>"]
    # nothing of the user turns, the default system turn or the role markers is trained
    untrained = tok.decode([t for t, m in zip(ids, mask, strict=True) if not m])
    assert "Write f." in untrained and "Now make it return 1." in untrained and "SmolLM" in untrained
    assert "def f" not in untrained


def test_bad_messages_are_one_line_errors(tok):
    with pytest.raises(DataError, match=r"messages\[1\] must be"):
        chat.record_messages({"messages": [{"role": "user", "content": "x"}, {"role": "bot", "content": "y"}]})
    with pytest.raises(DataError, match="no assistant turn"):
        chat.record_messages({"messages": [{"role": "user", "content": "x"}]})


def test_a_template_without_end_of_turn_gets_eos_trained(tok, tmp_path):
    tpl = tmp_path / "plain.jinja"
    tpl.write_text(
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    t = chat.prepare_tokenizer(tok.__class__.from_pretrained(tok.name_or_path), "x", str(tpl))
    ids, mask = chat.encode_conversation(t, chat.record_messages({"instruction": "Hi", "output": "Hello"}))
    trained = [i for i, m in zip(ids, mask, strict=True) if m]
    assert trained[-1] == t.eos_token_id and t.decode(trained[:-1]).strip() == "Hello"
    assert chat.end_of_turn_id(t) == t.eos_token_id


def test_packing_keeps_the_assistant_mask_and_the_cache_round_trips(tok, tmp_path):
    recs = [
        {"instruction": "Sort a list.", "output": "sorted(x)"},
        {"instruction": "Reverse a string.", "input": "s", "output": "s[::-1]"},
    ]
    fields, stats = chat.tokenize_chat_records(recs, tok, 256)
    assert stats["examples"] == 2 and stats["target_tokens"] == sum(fields["label_mask"])
    tokd = Tokenized(**fields, meta={"x": 1})
    save_tokenized(tokd, tmp_path / "c.pt")
    back = load_tokenized(tmp_path / "c.pt")
    ds = TrainDataset(back)
    expected = [ds[i] for i in range(len(ds))]
    assert expected == [dict(zip(("input_ids", "labels"), tokd.example(i), strict=True)) for i in range(2)]
    from evolcoder.train.data import packing_collator

    batch = packing_collator()(expected)
    want = []
    for f in expected:
        want += [IGNORE_INDEX, *f["labels"][1:]]  # the collator's boundary label (a prompt token: already -100)
    assert batch["labels"][0].tolist() == want == functools.reduce(operator.iadd, (f["labels"] for f in expected), [])
    assert batch["position_ids"][0].tolist() == [
        *range(len(expected[0]["input_ids"])),
        *range(len(expected[1]["input_ids"])),
    ]
    # truncation keeps the mask aligned; a record whose answer lies beyond the window is dropped
    prefix_len = fields["prompt_lens"][0]
    _, st = chat.tokenize_chat_records(recs[:1] * 2 + [{"instruction": "x " * 300, "output": "y"}], tok, prefix_len + 2)
    assert st["truncated"] == 3 and st["dropped_no_target"] == 1 and st["examples"] == 2


def test_no_chat_template_stops_with_one_line_naming_the_model_and_the_alternatives(smol_dir, tmp_path):
    bare = tmp_path / "bare-model"
    bare.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(f"{smol_dir}/{name}", bare / name)
    cfg = json.loads((bare / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(cfg))
    conf = {
        "train": {"base_model": str(bare), "prompt_template": "chat", "chat_template": None},
        "evaluation": {"prompt_template": "chat", "models": [{"name": "m", "model": "trained"}]},
    }
    with pytest.raises(EvolcoderError) as err:
        chat.check_chat_config(conf)
    msg = str(err.value)
    assert "\n" not in msg and str(bare) in msg and "train.chat_template" in msg and "chatml" in msg
    assert chat.has_chat_template(smol_dir) is True and chat.has_chat_template("org/not-cached-model") is None
    conf["train"]["chat_template"] = "chatml"  # the shipped ChatML template supplies one
    chat.check_chat_config(conf)
    from transformers import AutoTokenizer

    t = AutoTokenizer.from_pretrained(bare)
    with pytest.raises(EvolcoderError, match="has no chat template"):
        chat.prepare_tokenizer(t, str(bare))
    chat.prepare_tokenizer(t, str(bare), "chatml")
    assert chat.generation_prompt(t, "hi") == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_a_tokenizer_that_adds_bos_gets_it_once_in_training_and_generation_alike(tok, tmp_path):
    """Llama/DeepSeek-style tokenizers put BOS before a text: a training conversation starts with exactly that
    BOS (untrained) and the generation prompt gets it from the tokenizer (evolcoder.models.encode_prompts), never
    twice, whether the template writes it or not."""
    from tokenizers.processors import TemplateProcessing

    from evolcoder.models import encode_prompts

    t = tok.__class__.from_pretrained(tok.name_or_path)
    t.bos_token = "<|endoftext|>"
    t._tokenizer.post_processor = TemplateProcessing(single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", 0)])
    chat.prepare_tokenizer(t, "llama-like", "alpaca")
    assert chat.bos_prefix(t) == "<|endoftext|>"
    msgs = chat.record_messages({"instruction": "Sort x.", "output": "sorted(x)"})
    ids, mask = chat.encode_conversation(t, msgs)
    assert ids[0] == 0 and mask[0] == 0 and ids.count(0) == 1  # BOS once, untrained
    prompt = chat.generation_prompt(t, "Sort x.")
    assert prompt == "### Instruction:\nSort x.\n\n### Response:\n"  # BOS: added by the tokenizer at generation
    p_ids = encode_prompts(t, [prompt])[0]
    assert ids[: len(p_ids)] == p_ids and mask[: len(p_ids)] == [0] * len(p_ids)
    # the template closes the answer with the tokenizer's EOS (SmolLM2: <|im_end|>), trained
    assert t.decode([i for i, m in zip(ids, mask, strict=True) if m]) == "sorted(x)<|im_end|>"
    assert chat.bos_prefix(tok) == ""  # SmolLM2 adds none
    # a template that writes {{ bos_token }} itself: still one BOS on both sides
    t.chat_template = "{{ bos_token }}" + t.chat_template
    ids2, mask2 = chat.encode_conversation(t, msgs)
    assert (ids2, mask2) == (ids, mask) and chat.generation_prompt(t, "Sort x.") == prompt


def test_multi_turn_seed_records_keep_their_conversation(tmp_path):
    from evolcoder.seed import build_seed

    conv = [
        {"role": "user", "content": "Write f."},
        {"role": "assistant", "content": "def f(): pass"},
        {"role": "user", "content": "Return 1."},
        {"role": "assistant", "content": "def f(): return 1"},
    ]
    src = tmp_path / "seed.jsonl"
    src.write_text(json.dumps({"messages": conv}) + "\n" + json.dumps({"instruction": "Add.", "output": "a+b"}) + "\n")
    recs, _ = build_seed(str(src), None, 42, False)
    multi = next(r for r in recs if "messages" in r)
    assert multi["messages"] == conv and multi["instruction"] == "Write f." and multi["output"] == "def f(): return 1"
    assert chat.record_messages(multi) == conv
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "x"}]}) + "\n")
    with pytest.raises(DataError, match="no assistant turn"):
        build_seed(str(bad), None, 42, False)


def test_hub_ids_are_checked_from_the_local_hub_cache(tmp_path, monkeypatch):
    """A hub id whose tokenizer files are cached is checked before any job; one not cached is left to the
    tokenize step (None: the login node may have no hub access)."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--org--base"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc")
    snap = repo / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>"}))
    assert chat.has_chat_template("org/base") is None  # chat_template.jinja: unknown to the cache
    (repo / ".no_exist" / "abc").mkdir(parents=True)
    (repo / ".no_exist" / "abc" / "chat_template.jinja").write_text("")
    assert chat.has_chat_template("org/base") is False
    (snap / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}"}))
    assert chat.has_chat_template("org/base") is True
