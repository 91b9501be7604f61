"""``evolcoder generate`` (benchmark completions) and ``evolcoder gather`` (shards -> sanitised file).

Generation settings (``--settings-json``)::

    limit            first N tasks (null = all)
    prompt_template  wizardcoder (15B-V1.0 scripts) | wizardcoder-v1.1 (33B-V1.1) | plain | chat (the
                     model's chat template, user turn + generation prompt; chat_template, system_prompt) |
                     path/to/template.txt ({problem} placeholder); the WizardCoder templates replace
                     each 4 spaces of the problem with a tab, and the raw record says so ("tabs": true)
    mode             greedy | sampled
    n, temperature, top_p   sampled mode: n samples per task (greedy: n = 1, temperature 0)
    max_new_tokens, batch_size
    backend          hf (transformers, CPU/GPU) | vllm (GPU, optional extra)
    dtype            auto | fp16 | bf16 | fp32 (auto: HF bf16 on GPU and on a CPU with native bf16,
                     else fp32; vLLM the model's)
    seed             sampling seed

Gather's settings (:class:`GatherSettings`): ``postprocess`` wizardcoder (WizardCoder's process scripts) |
evalplus (evalplus's sanitize). The workflow builds both with :func:`evolcoder.workflow.settings_for`.

``--gpus N`` (the GPUs the rule requests) is vLLM's ``tensor_parallel_size``; it changes where the
model runs, not the settings. Prompts are tokenised with the tokenizer's special tokens (BOS where it
adds one), as training tokenises them (:func:`evolcoder.models.encode_prompts`). Each shard and the
gathered file get a manifest (``<name>.manifest.json``) recording the backend and the dtype used.

Files a benchmark's adapter takes (its ``data_options``, e.g. MBPP+'s WizardCoder prompts) are
``--option NAME=PATH`` arguments of both commands.

Shards: ``--shard I --num-shards N`` takes the I-th contiguous chunk of the tasks, so a cluster
spreads generation over GPUs; ``gather`` concatenates shards in task order and sanitises them.
Progress goes to ``OUT.partial`` (flushed per batch); a rerun resumes from what is there and the
file is renamed to ``OUT`` when the shard is complete.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import click

from evolcoder.benchmarks import BENCHMARKS, get_benchmark, parse_options
from evolcoder.benchmarks.postprocess import POSTPROCESS_METHODS
from evolcoder.chat import is_chat, prompt_renderer
from evolcoder.config import Settings
from evolcoder.config import default_factory as _default
from evolcoder.errors import BackendError, DataError, EvolcoderError
from evolcoder.io import Progress, iter_jsonl, parse_json_option, write_jsonl, write_manifest

log = logging.getLogger(__name__)

# Imported through the benchmark adapters, never run here: generation and gathering run no scoring
# code, so editing the scorer does not regenerate (evolcoder.codehash; checked by the test suite).
CODE_HASH_EXCLUDES = (
    "evolcoder.benchmarks.harness",
    "evolcoder.benchmarks.verdicts",
    "evolcoder.benchmarks.timings",
    "evolcoder.sandbox",
    "evolcoder.passk",
)


EVALUATION_SECTION, SAMPLING_SECTION = "evaluation", "evaluation.sampling"


@dataclass
class GenSettings(Settings):
    """Generation settings: the mode's section of ``evaluation`` (greedy or sampling) with the
    evaluation-wide keys (defaults: the schema's)."""

    WHERE: ClassVar[str] = "generate settings"

    limit: int | None = _default(EVALUATION_SECTION, "limit")
    prompt_template: str = _default(EVALUATION_SECTION, "prompt_template")
    backend: str = _default(EVALUATION_SECTION, "backend")
    mode: str = "greedy"  # greedy | sampled
    n: int = 1  # samples per task (greedy: 1)
    temperature: float = _default(SAMPLING_SECTION, "temperature")  # sampled mode
    top_p: float = _default(SAMPLING_SECTION, "top_p")
    max_new_tokens: int = _default(SAMPLING_SECTION, "max_new_tokens")
    batch_size: int = _default(SAMPLING_SECTION, "batch_size")
    seed: int = 42
    dtype: str = _default(EVALUATION_SECTION, "dtype")  # auto | fp32 | fp16 | bf16
    tensor_parallel_size: int = 1  # vLLM; set from --gpus, not from the config
    chat_template: str | None = None  # prompt_template chat: train.chat_template (a .jinja file or chatml)
    system_prompt: str | None = None  # prompt_template chat: train.system_prompt

    def check(self) -> None:
        if self.mode not in ("greedy", "sampled"):
            raise EvolcoderError(f"generate: mode must be greedy or sampled, not {self.mode!r}")
        if self.backend not in ("hf", "vllm"):
            raise EvolcoderError(f"generate: backend must be hf or vllm, not {self.backend!r}")
        if self.mode == "greedy":  # the one place of greedy decoding's overrides
            self.n, self.temperature = 1, 0.0
        if self.dtype not in ("auto", "fp32", "fp16", "bf16"):
            raise EvolcoderError(f"generate: dtype must be auto, fp16, bf16 or fp32, not {self.dtype!r}")
        self.tensor_parallel_size = max(1, int(self.tensor_parallel_size))
        if self.n < 1 or self.batch_size < 1 or self.max_new_tokens < 1:
            raise EvolcoderError("generate: n, batch_size and max_new_tokens must be >= 1")


@dataclass
class GatherSettings(Settings):
    """What ``evolcoder gather`` reads: how raw outputs become programs (``evaluation.postprocess``)."""

    WHERE: ClassVar[str] = "gather settings"

    postprocess: str = _default(EVALUATION_SECTION, "postprocess")  # wizardcoder | evalplus

    def check(self) -> None:
        if self.postprocess not in POSTPROCESS_METHODS:
            raise EvolcoderError(
                f"gather: postprocess must be one of {', '.join(POSTPROCESS_METHODS)}, not {self.postprocess!r}"
            )


def shard_slice(n_items: int, shard: int, num_shards: int) -> tuple[int, int]:
    """Contiguous chunk ``shard`` of ``num_shards`` over ``n_items`` (sizes differ by at most 1)."""
    if not 0 <= shard < num_shards:
        raise EvolcoderError(f"--shard {shard} out of range for --num-shards {num_shards}")
    base, extra = divmod(n_items, num_shards)
    start = shard * base + min(shard, extra)
    return start, start + base + (1 if shard < extra else 0)


def truncate_at_stop(text: str, stops) -> str:
    cut = len(text)
    for s in stops:
        i = text.find(s)
        if i != -1:
            cut = min(cut, i)
    return text[:cut]


def plan(bench, data_path: str | None, settings: GenSettings, shard: int, num_shards: int, render=None) -> list[dict]:
    """The (task, sample) items of one shard, with their prompts (as sent: tabs included) and whether
    the template's tab substitution has to be undone on the output. ``render``: user text -> the chat
    prompt (prompt_template chat, :func:`evolcoder.chat.prompt_renderer`)."""
    from evolcoder.benchmarks.prompts import prompt_template

    tasks = bench.load_tasks(data_path)
    if settings.limit:
        tasks = tasks[: int(settings.limit)]
    tabs = prompt_template(settings.prompt_template, bench).tabs
    lo, hi = shard_slice(len(tasks), shard, num_shards)
    items = []
    for t in tasks[lo:hi]:
        prompt = bench.build_prompt(t, settings.prompt_template)
        if render is not None:
            prompt = render(prompt)
        for k in range(settings.n):
            items.append({"task_id": str(t["task_id"]), "sample_idx": k, "prompt": prompt, "tabs": tabs})
    return items


# ----------------------------------------------------------------------------- backends


class HFBackend:
    """transformers, left-padded batches, stop sequences applied while generating."""

    def __init__(self, model: str, settings: GenSettings):
        import torch

        from evolcoder.models import dtype_name, load_for_generation

        self.torch = torch
        self.tok, self.model, self.device = load_for_generation(model, settings.dtype)
        self.settings = settings
        self.info = {"backend": "hf", "device": self.device, "dtype": dtype_name(self.model.dtype)}
        self.generated_tokens = 0  # new tokens so far (the progress lines' tokens/s, the manifest)

    def generate(self, prompts: list[str], stops, seed: int) -> list[str]:
        from transformers import StoppingCriteria, StoppingCriteriaList

        torch, tok, s = self.torch, self.tok, self.settings
        enc = prompt_batch(tok, prompts).to(self.device)
        width = enc["input_ids"].shape[1]
        # the newest tokens that can hold a stop sequence (its own tokens, twice over: a context can
        # split it finer than it splits alone)
        tail = 8 + 2 * max((len(tok(st, add_special_tokens=False)["input_ids"]) for st in stops), default=0)

        class Stop(StoppingCriteria):
            """Per row: decode only the newest tokens of the rows still running (a row once stopped
            stays stopped; transformers pads it from then on)."""

            def __init__(self):
                self.done = torch.zeros(len(prompts), dtype=torch.bool, device=enc["input_ids"].device)

            def __call__(self, input_ids, scores, **kwargs):
                rows = (~self.done).nonzero().flatten().tolist()
                if rows:
                    tails = tok.batch_decode(input_ids[rows, width:][:, -tail:], skip_special_tokens=True)
                    for r, t in zip(rows, tails, strict=True):
                        if any(st in t for st in stops):
                            self.done[r] = True
                return self.done.clone()

        kwargs = dict(
            max_new_tokens=s.max_new_tokens,
            pad_token_id=tok.pad_token_id,
            stopping_criteria=StoppingCriteriaList([Stop()]) if stops else None,
        )
        if s.mode == "sampled":
            torch.manual_seed(seed)
            kwargs.update(do_sample=True, temperature=s.temperature, top_p=s.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            out = self.model.generate(**enc, **kwargs)
        new = out[:, width:]
        self.generated_tokens += int((new != tok.pad_token_id).sum())  # pad = EOS after the end
        texts = tok.batch_decode(new, skip_special_tokens=True)
        return [truncate_at_stop(t, stops) for t in texts]


class VLLMBackend:
    """vLLM (GPU); imported only when selected."""

    def __init__(self, model: str, settings: GenSettings):
        try:
            from vllm import LLM
        except ImportError:
            raise BackendError(
                "backend vllm: the vllm package is not installed (pip install 'evolcoder[vllm]' on a GPU machine)"
            ) from None
        from evolcoder.models import DTYPES, dtype_name, resolve

        self.llm = LLM(
            model=resolve(model),
            seed=settings.seed,
            dtype=DTYPES.get(settings.dtype, "auto"),
            tensor_parallel_size=settings.tensor_parallel_size,
        )
        self.settings = settings
        self.tok = self.llm.get_tokenizer()
        used = getattr(getattr(self.llm.llm_engine, "model_config", None), "dtype", settings.dtype)
        self.info = {
            "backend": "vllm",
            "device": "cuda",
            "dtype": dtype_name(used),
            "tensor_parallel_size": settings.tensor_parallel_size,
        }
        self.generated_tokens = 0

    def generate(self, prompts: list[str], stops, seed: int) -> list[str]:
        from vllm import SamplingParams

        s = self.settings
        params = SamplingParams(
            temperature=s.temperature,
            top_p=s.top_p if s.mode == "sampled" else 1.0,
            max_tokens=s.max_new_tokens,
            stop=list(stops),
            seed=seed,
        )
        from evolcoder.models import encode_prompts

        # token ids, not text: the same special tokens as the HF backend and training
        ids = encode_prompts(self.tok, prompts)
        outs = self.llm.generate([{"prompt_token_ids": p} for p in ids], params)
        self.generated_tokens += sum(len(o.outputs[0].token_ids) for o in outs)
        return [truncate_at_stop(o.outputs[0].text, stops) for o in outs]


def prompt_batch(tok, prompts: list[str]):
    """A padded batch (tensors) of prompts tokenised as training tokenises them (BOS where the tokenizer
    adds one); the padding side is the tokenizer's (left for generation)."""
    from evolcoder.models import encode_prompts

    return tok.pad({"input_ids": encode_prompts(tok, prompts)}, return_tensors="pt")


def manifest_path(out: str | os.PathLike) -> Path:
    """``x/0.raw.jsonl`` -> ``x/0.manifest.json``; ``x/greedy.jsonl`` -> ``x/greedy.manifest.json``."""
    out = Path(out)
    return out.with_name(out.name.removesuffix(".jsonl").removesuffix(".raw") + ".manifest.json")


def generation_backend(model: str, settings: GenSettings):
    """The backend of ``settings.backend``: hf (transformers, set up by
    :func:`evolcoder.models.load_for_generation`, as evolution's local backend) or vllm."""
    return (VLLMBackend if settings.backend == "vllm" else HFBackend)(model, settings)


def run_generation(
    model: str,
    benchmark: str,
    out: str,
    settings: GenSettings,
    data_path: str | None = None,
    shard: int = 0,
    num_shards: int = 1,
    backend=None,
    options: dict | None = None,
) -> int:
    """Generate the shard's items into ``out`` (resumable); returns the number of records."""
    bench = get_benchmark(benchmark, **(options or {}))
    render = None
    if is_chat(settings.prompt_template):
        render = prompt_renderer(model, settings.chat_template, settings.system_prompt)
    items = plan(bench, data_path, settings, shard, num_shards, render)
    partial = Path(str(out) + ".partial")
    done: dict[tuple[str, int], dict] = {}
    if partial.exists():
        try:
            for rec in iter_jsonl(partial):
                done[(str(rec["task_id"]), int(rec["sample_idx"]))] = rec
        except (DataError, KeyError):
            log.warning("%s: unreadable tail, keeping the readable lines", partial)
    todo = [it for it in items if (it["task_id"], it["sample_idx"]) not in done]
    log.info(
        "%s shard %d/%d: %d items, %d on disk, %d to generate",
        benchmark,
        shard,
        num_shards,
        len(items),
        len(items) - len(todo),
        len(todo),
    )
    if todo:
        backend = backend or generation_backend(model, settings)
        stops = tuple(bench.stop_sequences)
        partial.parent.mkdir(parents=True, exist_ok=True)
        # rewrite the readable part (drops a torn last line), then append batch by batch
        write_jsonl(partial, [done[k] for k in ((i["task_id"], i["sample_idx"]) for i in items) if k in done])
        bs = settings.batch_size
        # batches of similar prompt lengths: less left padding to run through the model
        todo.sort(key=lambda it: len(it["prompt"]))
        progress = Progress(benchmark, len(todo), "generated", log)
        t0 = time.perf_counter()
        with open(partial, "a", encoding="utf-8") as fh:
            for b in range(0, len(todo), bs):
                batch = todo[b : b + bs]
                seed = settings.seed + 7919 * items.index(batch[0])
                texts = backend.generate([it["prompt"] for it in batch], stops, seed)
                for it, text in zip(batch, texts, strict=True):
                    rec = {**it, "raw": text}
                    done[(it["task_id"], it["sample_idx"])] = rec
                    fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
                progress.update(len(batch), getattr(backend, "generated_tokens", None))
        seconds = time.perf_counter() - t0
    records = [done[(i["task_id"], i["sample_idx"])] for i in items]
    write_jsonl(out, records)
    info = dict(getattr(backend, "info", None) or {"backend": settings.backend, "dtype": None})
    if todo:  # throughput of this run (model loading excluded): the GPU smoke's summary reads it
        tokens = getattr(backend, "generated_tokens", None)
        info.update(seconds=round(seconds, 3), completions=len(todo), tokens=tokens)
        info["tokens_per_s"] = round(tokens / seconds, 1) if tokens and seconds > 0 else None
    write_manifest(
        manifest_path(out),
        stage="generate",
        settings=settings.to_dict() if hasattr(settings, "to_dict") else vars(settings),
        extra={
            "model": model,
            "benchmark": benchmark,
            "shard": [shard, num_shards],
            "dtype": info.get("dtype"),
            "generation": {**info, "dtype_requested": settings.dtype},
        },
    )
    partial.unlink(missing_ok=True)
    return len(records)


def gather(
    benchmark: str,
    shards: list[str],
    out: str,
    data_path: str | None = None,
    options: dict | None = None,
    postprocess: str = "wizardcoder",
) -> int:
    """Concatenate shards in task order and post-process: ``{task_id, sample_idx, solution, raw}``
    (``raw`` as the model wrote it; ``solution`` from it with the template's tabs undone)."""
    bench = get_benchmark(benchmark, **(options or {}))
    tasks = bench.load_tasks(data_path)
    order = {str(t["task_id"]): i for i, t in enumerate(tasks)}
    by_id = {str(t["task_id"]): t for t in tasks}
    recs = []
    for path in shards:
        for rec in iter_jsonl(path):
            tid = str(rec.get("task_id"))
            if tid not in by_id:
                raise DataError(f"{path}: task_id {tid!r} is not in {benchmark}")
            recs.append(rec)
    seen = set()
    for r in recs:
        key = (str(r["task_id"]), int(r.get("sample_idx", 0)))
        if key in seen:
            raise DataError(f"duplicate prediction {key} across shards")
        seen.add(key)
    recs.sort(key=lambda r: (order[str(r["task_id"])], int(r.get("sample_idx", 0))))
    out_recs = [
        {
            "task_id": str(r["task_id"]),
            "sample_idx": int(r.get("sample_idx", 0)),
            "solution": bench.solution_from_record(
                by_id[str(r["task_id"])], {"raw": r.get("raw", ""), "tabs": r.get("tabs", False)}, postprocess
            ),
            "raw": r.get("raw", ""),
            "tabs": bool(r.get("tabs", False)),
            "postprocess": postprocess,
        }
        for r in recs
    ]
    n = write_jsonl(out, out_recs)
    shard_info = []
    for path in shards:
        m = manifest_path(path)
        shard_info.append(json.loads(m.read_text(encoding="utf-8")) if m.is_file() else {})
    dtypes = sorted({str(m.get("dtype")) for m in shard_info if m.get("dtype")})
    write_manifest(
        manifest_path(out),
        stage="gather",
        inputs={f"shard_{i}": p for i, p in enumerate(shards)},
        settings={"postprocess": postprocess},
        extra={
            "benchmark": benchmark,
            "model": next((m["model"] for m in shard_info if m.get("model")), None),
            "dtype": dtypes[0] if len(dtypes) == 1 else (", ".join(dtypes) or None),
            "generation": [m.get("generation") for m in shard_info],
        },
    )
    return n


@click.command(help="Generate benchmark completions with a model (one shard).")
@click.option("--model", required=True, help="Model spec (directory, hub id, gguf:…, alias).")
@click.option("--benchmark", required=True, type=click.Choice(list(BENCHMARKS)))
@click.option("--out", required=True, help="Raw predictions (JSONL): {task_id, sample_idx, prompt, raw}.")
@click.option("--settings-json", "settings_json", default=None, help="Generation settings (JSON or file).")
@click.option("--data", "data_path", default=None, help="Dataset file.")
@click.option("--option", "options", multiple=True, help="A file the benchmark takes: NAME=PATH (repeatable).")
@click.option("--shard", type=int, default=0, show_default=True)
@click.option("--num-shards", type=int, default=1, show_default=True)
@click.option("--gpus", type=int, default=1, show_default=True, help="GPUs of the job: vLLM's tensor_parallel_size.")
def cli(
    model: str,
    benchmark: str,
    out: str,
    settings_json: str | None,
    data_path: str | None,
    options: tuple[str, ...],
    shard: int,
    num_shards: int,
    gpus: int,
) -> None:
    raw = parse_json_option(settings_json, "settings-json")
    settings = GenSettings.from_dict({**raw, "tensor_parallel_size": gpus})
    n = run_generation(model, benchmark, out, settings, data_path, shard, num_shards, options=parse_options(options))
    click.echo(f"{benchmark}: {n} completions -> {out}")


@click.command(help="Concatenate generation shards and sanitise them (raw and solution side by side).")
@click.option("--benchmark", required=True, type=click.Choice(list(BENCHMARKS)))
@click.option("--out", required=True, help="Sanitised predictions (JSONL).")
@click.option("--data", "data_path", default=None, help="Dataset file.")
@click.option(
    "--settings-json",
    "settings_json",
    default=None,
    help="Post-processing settings: {postprocess: wizardcoder | evalplus}.",
)
@click.option("--option", "options", multiple=True, help="A file the benchmark takes: NAME=PATH (repeatable).")
@click.argument("shards", nargs=-1, required=True)
def gather_cli(
    benchmark: str,
    out: str,
    data_path: str | None,
    settings_json: str | None,
    options: tuple[str, ...],
    shards: tuple[str, ...],
) -> None:
    settings = GatherSettings.from_dict(parse_json_option(settings_json, "settings-json"))
    n = gather(benchmark, list(shards), out, data_path, parse_options(options), settings.postprocess)
    click.echo(f"{benchmark}: {n} sanitised predictions -> {out}")
