"""Hub-ready artefacts: the evolved data set (parquet shards + dataset card), the checkpoint's model card
(+ ``model-index`` results from the table) and an optional push, all through ``huggingface_hub``'s
``DatasetCard`` / ``ModelCard`` / ``EvalResult`` / ``HfApi``.

``evolcoder export-data``  results/merged/train.jsonl -> results/dataset/{data/train-*.parquet, README.md}
``evolcoder model-card``   adds the results table's pass@1 (with intervals) to a model directory's card
``evolcoder push``         uploads results/dataset or a model directory, only when asked; never by default
"""

from __future__ import annotations

import collections
import json
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import click

from evolcoder.config import Settings
from evolcoder.config import default_factory as _default
from evolcoder.errors import DataError, EvolcoderError
from evolcoder.io import atomic_path, parse_json_option, read_json, read_jsonl, sha256_file

COLUMNS = ("instruction", "input", "output", "messages", "round", "method", "parent_id", "id")


@dataclass
class DatasetCardSettings(Settings):
    """What ``evolcoder export-data`` reads: the ``hub`` section's data set keys (defaults: the schema)
    and what the card says of the run."""

    SECTION: ClassVar[str] = "hub"
    WHERE: ClassVar[str] = "export-data settings"

    license: str = _default("hub", "license")
    pretty_name: str | None = _default("hub", "pretty_name")
    shard_rows: int = _default("hub", "shard_rows")
    seed_source: str = "?"  # seed.source
    evolver_model: str = "?"  # evolution.backend.model
    evolver_backend: str = "?"  # evolution.backend.kind
    rounds: int | str | None = None  # evolution.rounds
    commands: list[str] = field(default_factory=list)  # how the data set was made


@dataclass
class ModelCardSettings(Settings):
    """What ``evolcoder model-card`` reads: ``hub.model_license`` and ``hub.dataset_repo_id``."""

    WHERE: ClassVar[str] = "model-card settings"

    license: str = _default("hub", "model_license")
    dataset_ref: str | None = _default("hub", "dataset_repo_id")


SHARD_ROWS = DatasetCardSettings.shard_rows
# model specs of evolcoder that name a hub model
HUB_IDS = {"smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}
# (benchmark, split) -> the data set's hub id in model-index (results group by it, so every split has its own)
_BENCH_HUB = {
    ("humaneval", "base"): "openai_humaneval",
    ("humaneval", "plus"): "evalplus/humanevalplus",
    ("mbpp", "base"): "mbpp",
    ("mbpp", "plus"): "evalplus/mbppplus",
    ("mbpp-original", "base"): "google-research-datasets/mbpp",
    ("ds1000", "base"): "xlangai/DS-1000",
}


# ----------------------------------------------------------------------------- the data set


def dataset_row(rec: dict) -> dict:
    """A merged record as a row of the exported data set (``messages``: the conversation trained by
    prompt_template chat, without a system turn)."""
    from evolcoder.chat import messages_of

    msgs = messages_of(rec)
    first_user = next((m["content"] for m in msgs if m["role"] == "user"), "")
    last_answer = next((m["content"] for m in reversed(msgs) if m["role"] == "assistant"), "")
    return {
        "instruction": rec.get("instruction", first_user),
        "input": rec.get("input") or "",
        "output": rec.get("output", last_answer),
        "messages": msgs,
        "round": int(rec.get("round", 0)),
        "method": rec.get("method", "seed"),
        "parent_id": rec.get("parent_id"),
        "id": str(rec["id"]),
    }


def size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def _features():
    from datasets import Features, Value

    s = Value("string")
    return Features(
        {
            "instruction": s,
            "input": s,
            "output": s,
            "messages": [{"role": s, "content": s}],
            "round": Value("int32"),
            "method": s,
            "parent_id": s,
            "id": s,
        }
    )


def write_parquet_shards(rows: list[dict], data_dir: Path, shard_rows: int = SHARD_ROWS) -> list[Path]:
    """``train-0000i-of-0000N.parquet`` (the hub's split naming)."""
    from datasets import Dataset

    data_dir.mkdir(parents=True, exist_ok=True)
    for old in data_dir.glob("train-*.parquet"):
        old.unlink()
    n = max(1, -(-len(rows) // shard_rows))
    paths = []
    for i in range(n):
        path = data_dir / f"train-{i:05d}-of-{n:05d}.parquet"
        chunk = rows[i * shard_rows : (i + 1) * shard_rows]
        with atomic_path(path) as tmp:
            Dataset.from_list(chunk, features=_features()).to_parquet(str(tmp))
        paths.append(path)
    return paths


def _rejects_by_reason(round_stats: Sequence[str]) -> dict[str, dict[str, int]]:
    out = {}
    for path in round_stats:
        st = read_json(path)
        out[str(st.get("round", Path(path).parent.name))] = dict(st.get("rejects_by_reason") or {})
    return out


def dataset_card_text(rows: list[dict], info: dict) -> Any:
    """The dataset card: YAML header (license, task categories, size, the parquet config) and how the
    data was made."""
    from huggingface_hub import DatasetCard, DatasetCardData

    n = len(rows)
    data = DatasetCardData(
        license=info.get("license") or "other",
        language=["en"],
        task_categories=["text-generation"],
        size_categories=[size_category(n)],
        tags=["code", "evol-instruct", "wizardcoder", "synthetic", "evolcoder"],
        pretty_name=info.get("pretty_name") or "evolcoder Code Evol-Instruct data",
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*.parquet"}]}],
    )
    methods = collections.Counter(r["method"] for r in rows)
    rounds = collections.Counter(r["round"] for r in rows)
    rej = info.get("rejects_by_reason") or {}
    decon = info.get("decontamination") or {}
    lines = [
        f"# {data.pretty_name}",
        "",
        f"{n} instruction records made with evolcoder (WizardCoder's Code Evol-Instruct): "
        "a seed set rewritten round by round by an evolver LLM, failed evolutions eliminated, the rounds merged, "
        "deduplicated and decontaminated against the code benchmarks.",
        "",
        "## Columns",
        "",
        '`instruction`, `input` ("" when none), `output`; `messages` (the same record as a user/assistant '
        "conversation, what `prompt_template: chat` trains on); `round` (0 = seed); `method` (the evolution "
        "method, `seed` for the seed); `parent_id` (the record it was evolved from); `id` (stable content id).",
        "",
        "## How it was made",
        "",
        f"- Seed: `{info.get('seed_source', '?')}`, {rounds.get(0, 0)} records kept "
        f"(seed file sha256 `{info.get('seed_sha256', '?')}`)",
        f"- Evolver model: `{info.get('evolver_model', '?')}` ({info.get('evolver_backend', '?')} backend)",
        f"- Rounds: {info.get('rounds') or (max(rounds) if rounds else 0)}; records per round: "
        + ", ".join(f"{k}: {v}" for k, v in sorted(rounds.items())),
        "- Methods: " + ", ".join(f"`{k}` {v}" for k, v in sorted(methods.items())),
    ]
    if rej:
        lines.append("- Eliminated (by round and reason): ")
        for k, reasons in sorted(rej.items(), key=lambda kv: str(kv[0])):
            text = ", ".join(f"{r} {c}" for r, c in sorted(reasons.items())) or "none"
            lines.append(f"  - round {k}: {text}")
    if decon:
        if decon.get("enabled", True) and "n_dropped" in decon:
            by = ", ".join(f"{b} {c}" for b, c in (decon.get("dropped_by_benchmark") or {}).items()) or "none"
            lines.append(
                f"- Decontamination: {decon['n_dropped']} of {decon.get('records_checked', '?')} records dropped "
                f"({decon.get('ngram', '?')}-gram overlap with benchmark prompts/solutions; by benchmark: {by})"
            )
        else:
            lines.append("- Decontamination: off")
    if info.get("duplicates_dropped") is not None:
        lines.append(f"- Duplicates dropped: {info['duplicates_dropped']}")
    lines += ["", "## Commands", "", "```bash", *info.get("commands", []), "```", ""]
    lines += [
        "## Loading",
        "",
        "```python",
        "from datasets import load_dataset",
        'ds = load_dataset("parquet", data_dir="results/dataset/data")  # or load_dataset("<repo id>")',
        "```",
        "",
    ]
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))


def export_dataset(
    merged: str,
    out_dir: str,
    *,
    settings: dict | None = None,
    seed: str | None = None,
    round_stats: Sequence[str] = (),
    merge_stats: str | None = None,
    decontamination: str | None = None,
    command: str | None = None,
) -> dict:
    """Write ``out_dir/data/train-*.parquet`` and ``out_dir/README.md``; returns a summary."""
    settings = dict(settings or {})
    recs = read_jsonl(merged)
    if not recs:
        raise DataError(f"{merged}: no records to export")
    rows = []
    for i, rec in enumerate(recs):
        try:
            rows.append(dataset_row(rec))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{merged}: record {i + 1}: {exc}") from None
    out = Path(out_dir)
    shards = write_parquet_shards(rows, out / "data", int(settings.pop("shard_rows", SHARD_ROWS)))
    mstats = read_json(merge_stats) if merge_stats else {}
    info = {
        **settings,
        "seed_sha256": sha256_file(seed)[:16] if seed else None,
        "rejects_by_reason": _rejects_by_reason(round_stats),
        "decontamination": read_json(decontamination) if decontamination else {},
        "duplicates_dropped": mstats.get("duplicates_dropped"),
        "commands": [*settings.get("commands", []), *([command] if command else [])],
    }
    card = dataset_card_text(rows, info)
    with atomic_path(out / "README.md") as tmp:
        card.save(tmp)
    return {"records": len(rows), "shards": [str(p) for p in shards], "card": str(out / "README.md")}


# ----------------------------------------------------------------------------- the model card


def hub_model_id(spec: str) -> str | None:
    """The hub id of a model spec, where it names one (an alias or a hub id; not a local path)."""
    if spec in HUB_IDS:
        return HUB_IDS[spec]
    if spec.startswith(("gguf:", ".", "/")) or Path(spec).exists() or spec.count("/") != 1:
        return None
    return spec


def model_card_text(manifest: dict, settings: dict, prompt: tuple[str, str], dataset_ref: str | None = None) -> Any:
    """``prompt``: (how the prompts are built, an example prompt)."""
    from huggingface_hub import ModelCard, ModelCardData

    base = manifest.get("base_model", settings.get("base_model", "?"))
    hp = manifest.get("hyperparameters") or settings
    data = ModelCardData(
        base_model=hub_model_id(base),
        datasets=[dataset_ref] if dataset_ref and hub_model_id(dataset_ref) else None,
        license=settings.get("license") or "other",
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=["code", "evol-instruct", "wizardcoder", "evolcoder"],
    )
    how, example = prompt
    keys = (
        "learning_rate",
        "num_epochs",
        "max_steps",
        "global_batch_size",
        "micro_batch_size",
        "model_max_length",
        "warmup_steps",
        "lr_scheduler",
        "precision",
        "deepspeed",
        "lora",
        "packing",
        "prompt_template",
        "seed",
        "world_size",
    )
    table = ["| hyper-parameter | value |", "|---|---|"] + [
        f"| {k} | {json.dumps(hp.get(k)) if isinstance(hp.get(k), dict) else hp.get(k)} |" for k in keys if k in hp
    ]
    lines = [
        f"# {Path(settings.get('model_name') or 'evolcoder model').name}",
        "",
        f"`{base}` fine-tuned with evolcoder on Code Evol-Instruct data "
        f"(data set: `{dataset_ref or 'results/dataset'}`, sha256 of the training file "
        f"`{str(manifest.get('data_sha256', '?'))[:16]}`): {manifest.get('steps_done', '?')} steps, "
        f"final loss {manifest.get('final_loss', '?')}.",
        "",
        "## Training",
        "",
        *table,
        "",
        "Loss on the response tokens only"
        + (" (every assistant turn; system, user and template markers are masked)." if "chat" in how else "."),
        "",
        "## Prompt",
        "",
        f"Prompts are built with {how}. Example:",
        "",
        "```text",
        example,
        "```",
        "",
        "## Intended use",
        "",
        "Research on instruction tuning for code generation (reproducing WizardCoder's method). Generated code "
        "must be reviewed and run in a sandbox; the model was not trained for safety or for uses beyond code.",
        "",
        "## Evaluation",
        "",
        "Filled in by `evolcoder model-card` from `results/scores.json` once the model has been scored.",
        "",
    ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))


def write_model_card(model_dir: str | os.PathLike, manifest: dict, settings: dict, prompt: tuple[str, str]) -> Path:
    path = Path(model_dir) / "README.md"
    card = model_card_text(manifest, settings, prompt, settings.get("dataset_ref"))
    with atomic_path(path) as tmp:
        card.save(tmp)
    return path


def eval_results(scores: dict, model: str) -> list[Any]:
    """``EvalResult`` per (benchmark, split, mode) row of the table for ``model``: pass@1, with the 95%
    interval in the metric's name."""
    from huggingface_hub import EvalResult

    out = []
    for row in scores.get("rows", []):
        if row.get("model") != model or row.get("pass@1") is None:
            continue
        lo, hi = row.get("pass@1_lo"), row.get("pass@1_hi")
        method = f", {row['ci_method']}" if row.get("ci_method") else ""
        interval = f" (95% CI {lo:.1f}-{hi:.1f}{method})" if lo is not None else ""
        split = row.get("split", "base")
        out.append(
            EvalResult(
                task_type="text-generation",
                dataset_type=_BENCH_HUB.get((row["benchmark_id"], split), f"{row['benchmark_id']}-{split}"),
                dataset_name=row["benchmark"],
                dataset_config=row.get("mode", "greedy"),
                dataset_split="test",
                metric_type="pass@1",
                metric_value=row["pass@1"],
                metric_name=f"pass@1, {row.get('mode', 'greedy')}{interval}",
            )
        )
    return out


def add_results(model_dir: str | os.PathLike, scores_json: str, model: str, settings: dict | None = None) -> int:
    """Put the table's rows of ``model`` into the card's ``model-index``, and their text into the card;
    ``settings``: {license, dataset_ref} from the config. The card file and the directory keep their
    modification times: the checkpoint is not newer for it."""
    from huggingface_hub import ModelCard

    folder = Path(model_dir)
    path = folder / "README.md"
    if not path.is_file():
        raise EvolcoderError(f"{folder}: no model card README.md (written by evolcoder train)")
    scores = read_json(scores_json)
    results = eval_results(scores, model)
    card = ModelCard.load(path)
    card.data.eval_results = results or None
    card.data.model_name = model
    settings = settings or {}
    if settings.get("license"):
        card.data.license = settings["license"]
    if settings.get("dataset_ref"):
        card.data.datasets = [settings["dataset_ref"]]
    body = card.text.split("## Evaluation")[0].rstrip()
    rows = ["| benchmark | mode | pass@1 | 95% interval | tasks |", "|---|---|---|---|---|"]
    for row in scores.get("rows", []):
        if row.get("model") == model:
            ci = f"{row.get('pass@1_lo')}-{row.get('pass@1_hi')}" if row.get("pass@1_lo") is not None else ""
            rows.append(f"| {row['benchmark']} | {row.get('mode')} | {row['pass@1']} | {ci} | {row.get('n_tasks')} |")
    text = (
        f"{body}\n\n## Evaluation\n\nevolcoder's scorer (`results/scores.json`); the same numbers are in the "
        f"`model-index` above.\n\n" + "\n".join(rows) + "\n"
    )
    stamps = [(p, p.stat()) for p in (path, folder)]
    new = ModelCard(f"---\n{card.data.to_yaml()}\n---\n\n{text}")
    with atomic_path(path) as tmp:
        new.save(tmp)
    for p, st in stamps:
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    return len(results)


# ----------------------------------------------------------------------------- push


def upload_plan(kind: str, folder: str, repo_id: str, private: bool = True) -> dict:
    """The arguments of ``HfApi.upload_folder`` for a data set or model folder: its card and data (parquet
    shards; weights, tokenizer and config), never checkpoints, caches or logs."""
    path = Path(folder)
    if kind not in ("dataset", "model"):
        raise EvolcoderError(f"push: kind must be dataset or model, not {kind!r}")
    if not (path / "README.md").is_file():
        raise EvolcoderError(f"push: {folder} has no README.md card (run evolcoder export-data / train first)")
    allow = ["README.md", "data/*.parquet"]
    if kind == "model":
        allow = ["README.md", "*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "tokenizer*"]
    return {
        "repo_id": repo_id,
        "repo_type": kind,
        "folder_path": str(path),
        "allow_patterns": allow,
        "ignore_patterns": ["checkpoints/*", "*.partial/*", "*.lock", "*.log", ".cache/*"],
        "commit_message": f"evolcoder: upload {kind} ({path.name})",
    }


def push(kind: str, folder: str, repo_id: str, private: bool = True, token: str | None = None) -> str:
    from huggingface_hub import HfApi, get_token

    token = token or get_token()
    if not token:
        raise EvolcoderError(
            "push: no Hugging Face token (run `huggingface-cli login` or set HF_TOKEN); nothing was uploaded"
        )
    plan = upload_plan(kind, folder, repo_id, private)
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type=kind, private=private, exist_ok=True)
    info = api.upload_folder(**plan)
    return str(getattr(info, "commit_url", info))


# ----------------------------------------------------------------------------- commands


@click.command(help="Export the merged data set as parquet shards with a dataset card (results/dataset/).")
@click.option("--merged", required=True, type=click.Path(dir_okay=False), help="results/merged/train.jsonl")
@click.option("--out-dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--seed", "seed", default=None, type=click.Path(dir_okay=False), help="The seed file (hashed).")
@click.option("--merge-stats", default=None, type=click.Path(dir_okay=False), help="results/merged/stats.json")
@click.option("--decontamination", default=None, type=click.Path(dir_okay=False), help="decontamination.json")
@click.option("--round-stats", multiple=True, type=click.Path(dir_okay=False), help="A round's stats.json.")
@click.option(
    "--settings-json",
    default=None,
    help="{license, pretty_name, seed_source, evolver_model, evolver_backend, rounds, commands}, JSON or a file.",
)
def export_cli(
    merged: str,
    out_dir: str,
    seed: str | None,
    merge_stats: str | None,
    decontamination: str | None,
    round_stats: tuple[str, ...],
    settings_json: str | None,
) -> None:
    command = "evolcoder " + " ".join(shlex.quote(a) for a in sys.argv[1:] if not a.startswith("{"))
    got = export_dataset(
        merged,
        out_dir,
        settings=DatasetCardSettings.from_dict(parse_json_option(settings_json, "settings-json")).to_dict(),
        seed=seed,
        round_stats=round_stats,
        merge_stats=merge_stats,
        decontamination=decontamination,
        command=command,
    )
    click.echo(f"exported {got['records']} records in {len(got['shards'])} parquet shard(s) + card -> {out_dir}")


@click.command(help="Add the results table's pass@1 of a model to its model card (model-index).")
@click.option("--model-dir", required=True, type=click.Path(file_okay=False), help="results/train/<model>/model")
@click.option("--scores", required=True, type=click.Path(dir_okay=False), help="results/scores.json")
@click.option("--model-name", required=True, help="The model's name in the table.")
@click.option("--out", default=None, help="A record of what was added (JSON), for the workflow.")
@click.option("--settings-json", default=None, help="{license, dataset_ref} of the card, JSON or a file.")
def model_card_cli(model_dir: str, scores: str, model_name: str, out: str | None, settings_json: str | None) -> None:
    settings = ModelCardSettings.from_dict(parse_json_option(settings_json, "settings-json"))
    n = add_results(model_dir, scores, model_name, settings.to_dict())
    if out:
        from evolcoder.io import write_json

        write_json(out, {"model": model_name, "card": str(Path(model_dir) / "README.md"), "eval_results": n})
    click.echo(f"{model_name}: {n} evaluation results -> {Path(model_dir) / 'README.md'}")


@click.command(help="Upload results/dataset or a model directory to the Hugging Face hub (only when asked).")
@click.option("--repo-id", required=True, help="user/name on the hub.")
@click.option("--public", is_flag=True, help="Create the repository public (default private).")
@click.argument("kind", type=click.Choice(["dataset", "model"]))
@click.argument("folder", type=click.Path(file_okay=False, exists=True))
def push_cli(repo_id: str, public: bool, kind: str, folder: str) -> None:
    url = push(kind, folder, repo_id, private=not public)
    click.echo(f"uploaded {folder} -> {url}")
