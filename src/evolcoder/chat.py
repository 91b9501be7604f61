"""``prompt_template: chat``: instruction records as chat messages, rendered with the model's own chat
template (``tokenizer.apply_chat_template``), for training (assistant-only labels) and for generation
(the benchmark prompt as the user turn, ``add_generation_prompt=True``).

A record is ``messages`` (``[{role, content}, ...]``, several turns allowed) or, built from the
Alpaca fields, an optional system turn, the user turn ``instruction`` (+ ``"\\n\\n" + input``) and
the assistant turn ``output``. Labels: every token inside an assistant turn's answer, its end-of-turn
token included, is trained; everything else (system, user, role markers, the generation prompt) is
-100. The spans are found by rendering each assistant turn's prefix with the generation prompt and the
conversation up to that turn: what the latter adds is the answer, located in the full rendering and
mapped to tokens through the fast tokenizer's offsets. No model is needed; the functions take the
tokenizer.

A tokenizer without a chat template needs ``train.chat_template``: a ``.jinja`` file, or the name of
one shipped in ``templates/chat/`` (``chatml``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from evolcoder.errors import DataError, EvolcoderError
from evolcoder.io import sha256_json

CHAT = "chat"
ROLES = ("system", "user", "assistant")
_BUILTIN = resources.files("evolcoder") / "templates" / "chat"


def is_chat(prompt_template: str | None) -> bool:
    return prompt_template == CHAT


def builtin_chat_templates() -> list[str]:
    return sorted(p.name[: -len(".jinja")] for p in _BUILTIN.iterdir() if p.name.endswith(".jinja"))


def chat_template_text(value: str) -> str:
    """``train.chat_template``: a shipped template's name (``chatml``) or a ``.jinja`` file."""
    ref = _BUILTIN / f"{value}.jinja"
    if "/" not in value and not value.endswith(".jinja") and ref.is_file():
        return ref.read_text(encoding="utf-8")
    path = Path(value)
    if not path.is_file():
        raise EvolcoderError(
            f"train.chat_template: {value!r} is neither a shipped template "
            f"({', '.join(builtin_chat_templates())}) nor a .jinja file"
        )
    return path.read_text(encoding="utf-8")


def _no_template_message(model: str) -> str:
    return (
        f"base model {model}: its tokenizer has no chat template, needed by prompt_template: chat; "
        f"supply one with train.chat_template: <file.jinja> (or a shipped one: "
        f"{', '.join(builtin_chat_templates())}), or use prompt_template: wizardcoder"
    )


def _local_model_dir(spec: str) -> Path | None:
    """The directory a spec names when it is already on this machine (no export, no download)."""
    from evolcoder.models import ALIASES, gguf_export_dir, gguf_path

    spec = ALIASES.get(spec, spec)
    if spec.startswith("gguf:"):
        try:
            out = gguf_export_dir(gguf_path(spec))
        except EvolcoderError:
            return None
        return out if out.is_dir() else None
    if Path(spec).is_dir():
        return Path(spec)
    return None


def _dir_has_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    cfg = folder / "tokenizer_config.json"
    if cfg.is_file():
        try:
            return bool(json.loads(cfg.read_text(encoding="utf-8")).get("chat_template"))
        except (OSError, ValueError):
            return False
    return False


def has_chat_template(spec: str) -> bool | None:
    """Whether a model spec's tokenizer ships a chat template, from its files alone (no transformers,
    no download): True/False, or None when its files are not on this machine (a hub id not cached)."""
    folder = _local_model_dir(spec)
    if folder is not None:
        return _dir_has_template(folder)
    if spec.startswith((".", "/", "gguf:")):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        jinja = try_to_load_from_cache(spec, "chat_template.jinja")
        cfg = try_to_load_from_cache(spec, "tokenizer_config.json")
    except Exception:
        return None
    if isinstance(jinja, str):
        return True
    if not isinstance(cfg, str):
        return None
    if _dir_has_template(Path(cfg).parent):
        return True
    # no template in tokenizer_config.json; False only when the cache knows chat_template.jinja is absent
    return False if jinja is not None else None


def check_chat_config(cfg: dict) -> None:
    """Before any job: the models that take chat prompts have a chat template (or ``train.chat_template``
    supplies one). Models whose files are not on this machine are checked by their first job."""
    train, ev = cfg.get("train", {}), cfg.get("evaluation", {})
    supplied = train.get("chat_template")
    if supplied:
        chat_template_text(supplied)
        return
    specs = []
    if is_chat(train.get("prompt_template")):
        specs.append(train["base_model"])
    if is_chat(ev.get("prompt_template")):
        specs += [m["model"] for m in ev.get("models", []) if m["model"] != "trained"]
        if "base" in (ev.get("baselines") or []) or any(m["model"] == "trained" for m in ev.get("models", [])):
            # the trained model carries its base's template; the untuned baseline is the base
            specs.append(train["base_model"])
    for spec in dict.fromkeys(specs):
        if has_chat_template(spec) is False:
            raise EvolcoderError(_no_template_message(spec))


def prepare_tokenizer(tokenizer: Any, model: str, chat_template: str | None = None) -> Any:
    """Give the tokenizer the supplied template (it is saved with the trained model), or check that
    it has its own."""
    if chat_template:
        tokenizer.chat_template = chat_template_text(chat_template)
    if not getattr(tokenizer, "chat_template", None):
        raise EvolcoderError(_no_template_message(model))
    return tokenizer


def template_sha256(tokenizer: Any) -> str:
    return sha256_json({"chat_template": tokenizer.chat_template})


# ----------------------------------------------------------------------------- records -> messages


def record_messages(record: dict, system_prompt: str | None = None, where: str = "record") -> list[dict]:
    """The conversation of a record: its ``messages``, or system? + user (instruction [+ input]) +
    assistant (output)."""
    msgs = record.get("messages")
    if msgs is not None:
        if not isinstance(msgs, list) or not msgs:
            raise DataError(f"{where}: 'messages' must be a non-empty list of {{role, content}}")
        out = []
        for j, m in enumerate(msgs):
            if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                raise DataError(f"{where}: messages[{j}] must be {{role: system|user|assistant, content: str}}")
            out.append({"role": m["role"], "content": m["content"]})
        if not any(m["role"] == "assistant" for m in out):
            raise DataError(f"{where}: 'messages' has no assistant turn to train on")
        if system_prompt and out[0]["role"] != "system":
            out.insert(0, {"role": "system", "content": system_prompt})
        return out
    for key in ("instruction", "output"):
        if not isinstance(record.get(key), str):
            raise DataError(f"{where}: record has no string {key!r} (nor a 'messages' list)")
    return [
        *([{"role": "system", "content": system_prompt}] if system_prompt else []),
        {"role": "user", "content": user_text(record["instruction"], record.get("input") or "")},
        {"role": "assistant", "content": record["output"]},
    ]


def user_text(instruction: str, inp: str = "") -> str:
    return f"{instruction}\n\n{inp}" if inp.strip() else instruction


def messages_of(record: dict) -> list[dict]:
    """A record's conversation without a system turn (the data set export's ``messages`` column)."""
    return record_messages(record, None)


# ----------------------------------------------------------------------------- rendering


def _render(tokenizer: Any, messages: list[dict], generation_prompt: bool) -> str:
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    except Exception as exc:
        raise DataError(f"chat template cannot render this conversation: {exc}") from None


def bos_prefix(tokenizer: Any) -> str:
    """The BOS text the tokenizer itself puts before a text (``add_special_tokens=True``: Llama, DeepSeek), or
    "". Prompts are tokenised with the tokenizer's special tokens at generation
    (:func:`evolcoder.models.encode_prompts`), so a chat prompt leaves that BOS to the tokenizer (a template
    that writes it too would give two), and a training conversation starts with exactly that one BOS."""
    bos = getattr(tokenizer, "bos_token", None)
    if not bos or tokenizer.bos_token_id is None:
        return ""
    probe = tokenizer("x", add_special_tokens=True)["input_ids"]
    return bos if probe and probe[0] == tokenizer.bos_token_id and probe[1:] else ""


def _without_bos(tokenizer: Any, text: str) -> tuple[str, str]:
    """(the BOS text the tokenizer adds itself, ``text`` without a leading copy of it)."""
    bos = bos_prefix(tokenizer)
    return bos, text[len(bos) :] if bos and text.startswith(bos) else text


def generation_prompt(tokenizer: Any, text: str, system_prompt: str | None = None) -> str:
    """The prompt of a benchmark problem: the user turn, then the template's generation prompt. The
    same text as the prefix of a single-turn training example."""
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return _without_bos(tokenizer, _render(tokenizer, [*system, {"role": "user", "content": text}], True))[1]


def assistant_spans(tokenizer: Any, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """(full rendering, character spans of the assistant answers in it). A span runs from the end of
    the turn's generation prompt to its end-of-turn marker included (trailing whitespace excluded)."""
    full = _render(tokenizer, messages, False)
    spans = []
    cursor = 0
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prefix = _render(tokenizer, messages[:i], True) if i else ""
        upto = _render(tokenizer, messages[: i + 1], False)
        if not upto.startswith(prefix):
            raise DataError(
                f"chat template: turn {i} does not extend the rendered prefix with a generation prompt "
                f"(the template has no stable generation prompt; supply train.chat_template)"
            )
        answer = upto[len(prefix) :].rstrip()
        start = full.find(answer, max(cursor, len(prefix) if full.startswith(prefix) else cursor))
        if not answer or start < 0:
            raise DataError(f"chat template: assistant turn {i} is not found in the rendered conversation")
        spans.append((start, start + len(answer)))
        cursor = start + len(answer)
    return full, spans


def _special_ids(tokenizer: Any) -> set[int]:
    ids = set(tokenizer.all_special_ids)
    for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items():
        if getattr(t, "special", False):
            ids.add(int(i))
    return ids


def encode_conversation(tokenizer: Any, messages: list[dict]) -> tuple[list[int], list[int]]:
    """(input_ids, label_mask): mask 1 exactly on the tokens that overlap an assistant answer. BOS once, where
    the tokenizer adds one (:func:`bos_prefix`), untrained; the other special tokens are the template's. When an
    answer does not end in a special token (a template without an end-of-turn marker), EOS follows the
    last answer and is trained."""
    full, spans = assistant_spans(tokenizer, messages)
    bos, text = _without_bos(tokenizer, full)
    cut = len(full) - len(text)
    spans = [(a - cut, b - cut) for a, b in spans]
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    mask = [0] * len(ids)
    k = 0
    for t, (s, e) in enumerate(enc["offset_mapping"]):
        while k < len(spans) and s >= spans[k][1]:
            k += 1
        # a token overlapping an answer is trained (one that also holds the prompt's last space included)
        if k < len(spans) and s < spans[k][1] and max(e, s + 1) > spans[k][0]:
            mask[t] = 1
    trained = [t for t, m in enumerate(mask) if m]
    if trained and ids[trained[-1]] not in _special_ids(tokenizer) and tokenizer.eos_token_id is not None:
        ids.insert(trained[-1] + 1, tokenizer.eos_token_id)
        mask.insert(trained[-1] + 1, 1)
    if bos:  # the one BOS, as the tokenizer adds it to the prompt at generation
        ids, mask = [tokenizer.bos_token_id, *ids], [0, *mask]
    return ids, mask


def end_of_turn_id(tokenizer: Any) -> int | None:
    """The token that ends an assistant turn under this template (EOS when the template writes none)."""
    probe = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
    ids, mask = encode_conversation(tokenizer, probe)
    trained = [t for t, m in enumerate(mask) if m]
    return ids[trained[-1]] if trained else tokenizer.eos_token_id


def tokenize_chat_records(
    records: Iterable[dict],
    tokenizer: Any,
    max_length: int,
    system_prompt: str | None = None,
    source: str = "data",
) -> tuple[dict, dict]:
    """Chat counterpart of :func:`evolcoder.train.data.tokenize_records`: one example per record,
    every assistant turn trained, truncated to ``max_length``; examples with no trained token left are
    dropped and counted. Returns (the fields of a ``Tokenized``: input_ids, offsets, prompt_lens,
    label_mask; stats)."""
    ids_flat: list[int] = []
    mask_flat: list[int] = []
    offsets = [0]
    prompt_lens: list[int] = []
    stats = {"records": 0, "with_input": 0, "multi_turn": 0, "truncated": 0, "dropped_no_target": 0}
    stats.update(tokens=0, target_tokens=0)
    for i, rec in enumerate(records):
        where = f"{source}: record {i + 1}"
        msgs = record_messages(rec, system_prompt, where)
        stats["records"] += 1
        stats["with_input"] += bool((rec.get("input") or "").strip())
        stats["multi_turn"] += sum(m["role"] == "assistant" for m in msgs) > 1
        try:
            ids, mask = encode_conversation(tokenizer, msgs)
        except DataError as exc:
            raise DataError(f"{where}: {exc}") from None
        if len(ids) > max_length:
            stats["truncated"] += 1
            ids, mask = ids[:max_length], mask[:max_length]
        if not any(mask):
            stats["dropped_no_target"] += 1
            continue
        ids_flat.extend(ids)
        mask_flat.extend(mask)
        offsets.append(len(ids_flat))
        prompt_lens.append(mask.index(1))
        stats["target_tokens"] += sum(mask)
    stats.update(tokens=len(ids_flat), examples=len(prompt_lens))
    if not prompt_lens:
        why = f"empty, or every conversation's answers lie beyond model_max_length={max_length}"
        raise DataError(f"{source}: no training example left after tokenisation ({why})")
    return {"input_ids": ids_flat, "offsets": offsets, "prompt_lens": prompt_lens, "label_mask": mask_flat}, stats


def prompt_renderer(model: str, chat_template: str | None, system_prompt: str | None) -> Callable[[str], str]:
    """user text -> the chat prompt of ``model``'s tokenizer (benchmark generation)."""
    from transformers import AutoTokenizer

    from evolcoder.models import resolve

    path = resolve(model)
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise EvolcoderError(f"model {model}: cannot load its tokenizer ({exc})") from None
    # a model trained here carries the template it was trained with; the file is for the others
    if not getattr(tok, "chat_template", None) or not os.path.isfile(os.path.join(path, "training_manifest.json")):
        prepare_tokenizer(tok, model, chat_template)
    return lambda text: generation_prompt(tok, text, system_prompt)
