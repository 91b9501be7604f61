"""The `evolcoder tokenize` stage: instruction records -> the WizardCoder prompt's token ids (prompt
tokens masked, EOS appended, truncated to model_max_length), cached for `evolcoder train --tokenized`,
which checks the cache against its own tokenizer, template and data (:func:`check_tokenized`).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import click

from evolcoder.chat import is_chat, prepare_tokenizer, tokenize_chat_records
from evolcoder.chat import template_sha256 as chat_template_sha256
from evolcoder.errors import EvolcoderError
from evolcoder.io import parse_json_option, read_jsonl, sha256_file, sha256_json
from evolcoder.train.data import Tokenized, save_tokenized, tokenize_records, tokenizer_fingerprint
from evolcoder.train.settings import TokenizeSettings, TrainSettings, template, tokenize_settings

log = logging.getLogger(__name__)


def load_tokenizer(model_dir: str) -> Any:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError) as exc:
        raise EvolcoderError(f"base model {model_dir}: cannot load its tokenizer ({exc})") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def tokenize_file(
    data: str | os.PathLike, model_dir: str, raw_settings: dict, base_model_spec: str
) -> tuple[Tokenized, dict]:
    ts = tokenize_settings(raw_settings)
    tmpl = template(ts["prompt_template"])
    tok = load_tokenizer(model_dir)
    chat = is_chat(ts["prompt_template"])
    if chat:  # before reading the data: a base without a chat template stops here with one line
        prepare_tokenizer(tok, base_model_spec, ts.get("chat_template"))
    records = read_jsonl(data)
    t0 = time.time()
    if chat:
        fields, stats = tokenize_chat_records(
            records, tok, int(ts["model_max_length"]), ts.get("system_prompt"), source=str(data)
        )
        tokd = Tokenized(**fields, meta={})
        tmpl = {**tmpl, "chat_template_sha256": chat_template_sha256(tok), "system_prompt": ts.get("system_prompt")}
    else:
        tokd, stats = tokenize_records(records, tok, tmpl, int(ts["model_max_length"]), source=str(data))
    stats["seconds"] = round(time.time() - t0, 2)
    tokd.meta = {
        "base_model": base_model_spec,
        "tokenizer_fingerprint": tokenizer_fingerprint(tok),
        "template": ts["prompt_template"],
        "template_sha256": sha256_json(tmpl),
        "model_max_length": int(ts["model_max_length"]),
        "data": str(data),
        "data_sha256": sha256_file(data),
        "stats": stats,
    }
    return tokd, stats


def run_tokenize(data: str, base_model: str, out: str, raw_settings: dict) -> dict:
    from evolcoder.models import resolve

    model_dir = resolve(base_model)
    tokd, stats = tokenize_file(data, model_dir, raw_settings, base_model)
    save_tokenized(tokd, out)
    log.info(
        "tokenised %d records -> %d examples, %d tokens (%d truncated, %d dropped) -> %s",
        stats["records"],
        stats["examples"],
        stats["tokens"],
        stats["truncated"],
        stats["dropped_no_target"],
        out,
    )
    return stats


def check_tokenized(tokd: Tokenized, tok: Any, s: TrainSettings, data: str | None) -> None:
    m = tokd.meta
    problems = []
    if m.get("tokenizer_fingerprint") != tokenizer_fingerprint(tok):
        problems.append(f"tokenizer differs (tokenised with {m.get('base_model')!r})")
    tmpl = template(s.prompt_template)
    if is_chat(s.prompt_template):
        tmpl = {**tmpl, "chat_template_sha256": chat_template_sha256(tok), "system_prompt": s.system_prompt}
    if m.get("template_sha256") != sha256_json(tmpl):
        problems.append(f"prompt template differs ({m.get('template')!r})")
    if m.get("model_max_length") != s.model_max_length:
        problems.append(f"model_max_length {m.get('model_max_length')} != {s.model_max_length}")
    if data and Path(data).exists() and m.get("data_sha256") != sha256_file(data):
        problems.append(f"{data} changed since it was tokenised")
    if problems:
        raise EvolcoderError(
            "tokenised data does not match this run: " + "; ".join(problems) + " (re-run evolcoder tokenize)"
        )


@click.command(
    help="Tokenise instruction records with the WizardCoder prompt (prompt tokens masked, EOS "
    "appended, truncated to model_max_length) into a cache file for `evolcoder train --tokenized`."
)
@click.option("--data", required=True, type=click.Path(dir_okay=False), help="Instruction records (JSONL).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output .pt file.")
@click.option(
    "--settings-json",
    default=None,
    help="Tokenize settings, JSON or a file: base_model (whose tokenizer is used), model_max_length, "
    "prompt_template, chat_template, system_prompt (the train: section's keys that change the tokens).",
)
def cli(data: str, out: str, settings_json: str | None) -> None:
    s = TokenizeSettings.from_dict(parse_json_option(settings_json, "settings-json"))  # a bad template fails here
    stats = run_tokenize(data, s.base_model, out, s.to_dict())
    click.echo(
        f"tokenised {stats['examples']} examples ({stats['tokens']} tokens, "
        f"{stats['truncated']} truncated, {stats['dropped_no_target']} dropped) -> {out}"
    )
