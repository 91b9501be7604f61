"""Generation as training sees the prompt (BOS and special tokens), and generation precision (dtype).

The tokenizers are built here with `tokenizers` (no download): one that adds BOS (Llama, CodeLlama,
DeepSeek), one that adds BOS and EOS, one that adds nothing (StarCoder)."""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path
from typing import ClassVar

import pytest

from evolcoder.errors import EvolcoderError
from evolcoder.generate import GenSettings, gather, manifest_path, prompt_batch, run_generation
from evolcoder.train.data import render_prompt, tokenize_records
from evolcoder.train.settings import template

DATA = Path(os.environ.get("EVOLCODER_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
HE = DATA / "evalplus" / "HumanEvalPlus-v0.1.10.jsonl.gz"
needs_data = pytest.mark.skipif(not HE.exists(), reason=f"shared data not available ({HE})")

RECORDS = [
    {"instruction": "Write a function that adds two numbers .", "output": "def add ( a , b ) : return a + b"},
    {"instruction": "Reverse a list .", "output": "def rev ( x ) : return x [ : : - 1 ]"},
]


def make_tokenizer(single: str | None):
    """A word-level fast tokenizer; ``single``: its post-processor's template (None: no special tokens)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tmpl = template("wizardcoder")
    words = set()
    for r in RECORDS:
        words.update(render_prompt(r, tmpl).split() + r["output"].split())
    vocab = {w: i for i, w in enumerate(["<pad>", "<s>", "</s>", "<unk>", *sorted(words)])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if single:
        tk.post_processor = processors.TemplateProcessing(
            single=single, special_tokens=[("<s>", vocab["<s>"]), ("</s>", vocab["</s>"])]
        )
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tok.padding_side = "left"  # as load_for_generation sets it
    return tok


@pytest.mark.parametrize(
    "single, starts_with_bos",
    [("<s> $A", True), ("<s> $A </s>", True), (None, False)],
    ids=["bos", "bos+eos", "none"],
)
def test_generation_prompt_ids_equal_the_training_prompt_prefix(single, starts_with_bos):
    tok = make_tokenizer(single)
    tmpl = template("wizardcoder")
    data, _ = tokenize_records(RECORDS, tok, tmpl, max_length=512)
    prompts = [render_prompt(r, tmpl) for r in RECORDS]  # the same text at generation
    batch = prompt_batch(tok, prompts)
    for i in range(len(RECORDS)):
        ids, labels = data.example(i)
        train_prefix = ids[: data.prompt_lens[i]]
        row = batch["input_ids"][i][batch["attention_mask"][i].bool()].tolist()  # left padding removed
        assert row == train_prefix
        assert (row[0] == tok.bos_token_id) is starts_with_bos
        assert tok.eos_token_id not in row  # a prompt is a prefix: no EOS before the answer
        assert labels[len(row)] == ids[len(row)] != -100  # the answer's first token is learnt


def test_dtype_is_checked_with_one_line():
    with pytest.raises(EvolcoderError, match="dtype must be auto, fp16, bf16 or fp32, not 'fp8'"):
        GenSettings.from_dict({"dtype": "fp8"})


@needs_data
def test_hf_generation_in_bf16_on_cpu_is_recorded_in_the_manifests(tmp_path):
    settings = GenSettings.from_dict({"limit": 1, "max_new_tokens": 4, "batch_size": 1, "dtype": "bf16"})
    out = tmp_path / "greedy.shards" / "0.raw.jsonl"
    assert run_generation("smollm2-135m-instruct", "humaneval", str(out), settings, str(HE)) == 1
    shard = json.loads(manifest_path(out).read_text())
    assert manifest_path(out).name == "0.manifest.json"
    assert shard["dtype"] == "bf16" and shard["generation"]["backend"] == "hf"
    assert shard["generation"]["dtype_requested"] == "bf16" and shard["settings"]["dtype"] == "bf16"
    gen = shard["generation"]
    assert gen["completions"] == 1 and 0 < gen["tokens"] <= 4 and gen["seconds"] > 0 and gen["tokens_per_s"] > 0
    final = tmp_path / "greedy.jsonl"
    gather("humaneval", [str(out)], str(final), str(HE))
    gathered = json.loads(manifest_path(final).read_text())
    assert gathered["dtype"] == "bf16" and gathered["stage"] == "gather"
    assert gathered["model"] == "smollm2-135m-instruct" and "shard_0" in gathered["inputs"]


class FakeLLM:
    """vllm.LLM at the package boundary (no GPU here): records what the backend asks of it."""

    made: ClassVar[list[dict]] = []
    prompts: ClassVar[list] = []

    def __init__(self, **kwargs):
        FakeLLM.made.append(kwargs)
        self.llm_engine = types.SimpleNamespace(model_config=types.SimpleNamespace(dtype="torch.float16"))

    def get_tokenizer(self):
        return make_tokenizer("<s> $A")

    def generate(self, prompts, params):
        FakeLLM.prompts.extend(prompts)
        out = types.SimpleNamespace(text="    return 1\n", token_ids=[7, 8, 9])
        return [types.SimpleNamespace(outputs=[out]) for _ in prompts]


@needs_data
def test_vllm_gets_dtype_gpus_and_the_prompt_ids_with_bos(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from evolcoder.generate import cli

    fake = types.ModuleType("vllm")
    fake.LLM = FakeLLM
    fake.SamplingParams = lambda **kw: kw
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setattr("evolcoder.models.resolve", lambda spec: spec)
    out = tmp_path / "0.raw.jsonl"
    settings = {"backend": "vllm", "dtype": "fp16", "limit": 2, "max_new_tokens": 8}
    args = ["--model", "some/model", "--benchmark", "humaneval", "--data", str(HE), "--gpus", "4"]
    res = CliRunner().invoke(cli, [*args, "--settings-json", json.dumps(settings), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert FakeLLM.made[-1]["dtype"] == "float16" and FakeLLM.made[-1]["tensor_parallel_size"] == 4
    assert len(FakeLLM.prompts) == 2 and all(p["prompt_token_ids"][0] == 1 for p in FakeLLM.prompts)  # <s>
    m = json.loads(manifest_path(out).read_text())
    assert m["dtype"] == "fp16" and m["generation"]["tensor_parallel_size"] == 4 and m["generation"]["tokens"] == 6
    assert "--gpus" not in json.dumps(m["settings"]) and m["settings"]["tensor_parallel_size"] == 4
