"""Hub-ready artefacts: the data set export (parquet read back by `datasets`, card parsed by `DatasetCard`),
the model card (`ModelCard`, model-index = scores.json), the push's upload set (HfApi stubbed at the
network boundary), and the recipe overlays against the schema."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml

from evolcoder import hub
from evolcoder.errors import EvolcoderError

REPO = Path(__file__).resolve().parents[1]


def _records() -> list[dict]:
    return [
        {"id": "seed-a", "parent_id": None, "root_id": "seed-a", "round": 0, "method": "seed"}
        | {"instruction": "Add two numbers.", "input": "", "output": "a + b"},
        {"id": "r1-b", "parent_id": "seed-a", "root_id": "seed-a", "round": 1, "method": "add_constraints"}
        | {"instruction": "Add two numbers in O(1).", "input": "1, 2", "output": "def add(a, b): return a + b"},
        {
            "id": "seed-c",
            "parent_id": None,
            "round": 0,
            "method": "seed",
            "messages": [
                {"role": "user", "content": "Write f."},
                {"role": "assistant", "content": "def f(): ..."},
                {"role": "user", "content": "Return 1."},
                {"role": "assistant", "content": "def f(): return 1"},
            ],
        },
    ]


def test_export_reads_back_with_datasets_and_the_card_parses(tmp_path):
    from datasets import load_dataset
    from huggingface_hub import DatasetCard

    merged = tmp_path / "train.jsonl"
    merged.write_text("".join(json.dumps(r) + "\n" for r in _records()))
    seed = tmp_path / "seed.jsonl"
    seed.write_text('{"id": "seed-a"}\n')
    st = tmp_path / "round_1" / "stats.json"
    st.parent.mkdir()
    st.write_text(json.dumps({"round": 1, "rejects_by_reason": {"no_change": 3, "sorry": 1}}))
    decon = tmp_path / "decontamination.json"
    decon.write_text(
        json.dumps({"n_dropped": 2, "records_checked": 5, "ngram": 13, "dropped_by_benchmark": {"humaneval": 2}})
    )
    out = tmp_path / "dataset"
    got = hub.export_dataset(
        str(merged),
        str(out),
        settings={"license": "cc-by-nc-4.0", "seed_source": "builtin", "evolver_model": "gpt-4o-mini", "rounds": 1}
        | {"shard_rows": 2},
        seed=str(seed),
        round_stats=[str(st)],
        decontamination=str(decon),
        command="evolcoder export-data --merged train.jsonl",
    )
    assert got["records"] == 3 and len(got["shards"]) == 2
    ds = load_dataset("parquet", data_dir=str(out / "data"))["train"]
    assert ds.column_names == list(hub.COLUMNS) and len(ds) == 3
    rows = {r["id"]: r for r in ds}
    assert rows["r1-b"]["messages"] == [
        {"role": "user", "content": "Add two numbers in O(1).\n\n1, 2"},
        {"role": "assistant", "content": "def add(a, b): return a + b"},
    ]
    assert rows["r1-b"]["round"] == 1 and rows["r1-b"]["parent_id"] == "seed-a" and rows["seed-a"]["parent_id"] is None
    assert rows["seed-c"]["instruction"] == "Write f." and rows["seed-c"]["output"] == "def f(): return 1"
    assert len(rows["seed-c"]["messages"]) == 4
    card = DatasetCard.load(out / "README.md")
    data = card.data.to_dict()
    assert data["license"] == "cc-by-nc-4.0" and data["task_categories"] == ["text-generation"]
    assert data["size_categories"] == ["n<1K"]
    assert data["configs"] == [
        {"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*.parquet"}]}
    ]
    for text in ("gpt-4o-mini", "`add_constraints` 1", "`seed` 2", "no_change 3", "2 of 5 records dropped"):
        assert text in card.text, text
    assert "evolcoder export-data --merged train.jsonl" in card.text and "sha256" in card.text
    # the hub's own loader reads the folder through the card's configs
    assert len(load_dataset(str(out))["train"]) == 3


def _scores() -> dict:
    row = {"model": "mine", "benchmark": "HumanEval", "benchmark_id": "humaneval", "mode": "greedy", "n_tasks": 3}
    return {
        "rows": [
            row | {"split": "base", "pass@1": 33.3, "pass@1_lo": 6.1, "pass@1_hi": 79.2, "ci_method": "wilson"},
            row | {"benchmark": "HumanEval+", "split": "plus", "pass@1": 0.0, "pass@1_lo": 0.0, "pass@1_hi": 56.1},
            row | {"model": "other", "split": "base", "pass@1": 66.7},
        ]
    }


def test_model_card_parses_and_carries_the_tables_results(tmp_path):
    from huggingface_hub import ModelCard

    model = tmp_path / "model"
    model.mkdir()
    manifest = {
        "base_model": "Qwen/Qwen2.5-Coder-7B",
        "data_sha256": "ab" * 32,
        "steps_done": 2,
        "final_loss": 1.5,
        "hyperparameters": {"learning_rate": 2e-5, "prompt_template": "chat", "lora": {"r": 16}},
    }
    prompt = ("the tokenizer's chat template", "<|im_start|>user\nWrite fib.<|im_end|>\n<|im_start|>assistant\n")
    hub.write_model_card(model, manifest, {"model_name": "mine"}, prompt)
    card = ModelCard.load(model / "README.md")
    assert card.data.base_model == "Qwen/Qwen2.5-Coder-7B" and card.data.pipeline_tag == "text-generation"
    assert "| learning_rate | 2e-05 |" in card.text and "<|im_start|>assistant" in card.text
    assert "Intended use" in card.text
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps(_scores()))
    old = time.time() - 1000
    os.utime(model / "README.md", (old, old))
    os.utime(model, (old, old))
    n = hub.add_results(model, str(scores), "mine", {"license": "apache-2.0", "dataset_ref": "me/evolved"})
    assert n == 2
    card = ModelCard.load(model / "README.md")
    got = {(r.dataset_name, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert got == {("HumanEval", "pass@1"): 33.3, ("HumanEval+", "pass@1"): 0.0}
    assert "95% CI 6.1-79.2" in card.data.eval_results[0].metric_name
    assert card.data.license == "apache-2.0" and card.data.datasets == ["me/evolved"]
    assert "model-index" in (model / "README.md").read_text() and "| HumanEval | greedy | 33.3 |" in card.text
    # the checkpoint does not look newer: its downstream jobs are not rerun for the card
    assert abs((model / "README.md").stat().st_mtime - old) < 1 and abs(model.stat().st_mtime - old) < 1


def test_push_uploads_the_card_and_data_only_and_needs_a_token(tmp_path, monkeypatch):
    import huggingface_hub

    ds = tmp_path / "dataset"
    (ds / "data").mkdir(parents=True)
    (ds / "README.md").write_text("---\nlicense: other\n---\n")
    calls = []

    class FakeApi:  # the network boundary: HfApi's two calls
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, **kw):
            calls.append(("create_repo", repo_id, kw))

        def upload_folder(self, **kw):
            calls.append(("upload_folder", kw))
            return type("Info", (), {"commit_url": "https://hub/commit/1"})()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(EvolcoderError, match="no Hugging Face token") as err:
        hub.push("dataset", str(ds), "me/evolved")
    assert "\n" not in str(err.value) and calls == []
    assert hub.push("dataset", str(ds), "me/evolved", token="hf_x") == "https://hub/commit/1"
    assert calls[1] == ("create_repo", "me/evolved", {"repo_type": "dataset", "private": True, "exist_ok": True})
    kw = calls[2][1]
    assert kw["repo_id"] == "me/evolved" and kw["repo_type"] == "dataset" and kw["folder_path"] == str(ds)
    assert kw["allow_patterns"] == ["README.md", "data/*.parquet"] and "checkpoints/*" in kw["ignore_patterns"]
    model_plan = hub.upload_plan("model", str(ds), "me/m")
    assert "*.safetensors" in model_plan["allow_patterns"] and model_plan["repo_type"] == "model"
    with pytest.raises(EvolcoderError, match=r"has no README\.md"):
        hub.upload_plan("model", str(tmp_path), "me/m")


RECIPES = sorted((REPO / "config" / "recipes").glob("*.yaml"))


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_overlays_validate_against_the_schema(recipe):
    import jsonschema

    from evolcoder.benchmarks import describe
    from evolcoder.config import schema
    from evolcoder.train.settings import parse_settings

    over = yaml.safe_load(recipe.read_text())
    cfg = _merge(yaml.safe_load((REPO / "config.yaml").read_text()), over)
    jsonschema.Draft202012Validator(schema(describe())).validate(cfg)
    train = {k: v for k, v in cfg["train"].items() if k not in ("model_name", "resources")}
    s = parse_settings(train)  # the trainer's own checks (batch divisibility, DeepSpeed preset, template)
    assert s.prompt_template == "chat" and s.grad_accum(cfg["train"]["resources"]["gpus"]) >= 1
    assert cfg["evaluation"]["prompt_template"] == "chat"
    assert "#" in recipe.read_text()  # every recipe says where its numbers come from


def test_there_are_the_four_recipes():
    assert {p.stem for p in RECIPES} == {
        "qwen2.5-coder-7b",
        "deepseek-coder-6.7b-base",
        "starcoder2-15b",
        "codellama-7b-python",
    }
