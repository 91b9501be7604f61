"""The fine-tuning run: HF Trainer (+ optional DeepSpeed ZeRO, LoRA, packing), preemption-safe.

Layout of ``--out-dir``:
  checkpoints/checkpoint-N/   Trainer checkpoints every save_steps (resume from the last complete one)
  model/                      final save_pretrained model + tokenizer + training_manifest.json
  log_history.json            loss / learning-rate / tokens-per-second / peak memory per logging step
                              (``evolcoder plot-training`` draws loss.png from it)
"""

from __future__ import annotations

import json
import logging
import os
import re
import resource
import shutil
import time
from pathlib import Path
from typing import Any

from evolcoder.chat import end_of_turn_id, is_chat, prepare_tokenizer
from evolcoder.errors import EvolcoderError
from evolcoder.hub import write_model_card
from evolcoder.io import write_json, write_manifest
from evolcoder.launch import free_port
from evolcoder.models import model_config
from evolcoder.train.data import (
    PaddingCollator,
    TrainDataset,
    load_tokenized,
    packing_collator,
    render_prompt,
)
from evolcoder.train.settings import (
    TrainSettings,
    deepspeed_config_path,
    gradient_accumulation,
    template,
    trajectory_fingerprint,
)
from evolcoder.train.tokens import check_tokenized, load_tokenizer, tokenize_file

log = logging.getLogger(__name__)

_CKPT_RE = re.compile(r"^checkpoint-(\d+)$")
# Extra Trainer callbacks: "module:factory[,module:factory...]"; each factory is called with no
# arguments and returns a transformers.TrainerCallback (logging to a tracker, a fault injector in
# the tests); a callback with a `trainer` attribute gets the Trainer.
CALLBACKS_ENV = "EVOLCODER_TRAIN_CALLBACKS"


# ---------------------------------------------------------------------------------------------
# model loading
# ---------------------------------------------------------------------------------------------


def load_model(model_dir: str, s: TrainSettings) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    dtype = torch.float32
    if s.deepspeed and s.precision != "fp32":  # DeepSpeed keeps fp32 master weights itself
        dtype = torch.bfloat16 if s.precision == "bf16" else torch.float16
    kw: dict[str, Any] = {"config": model_config(model_dir), "dtype": dtype}
    if s.attn_implementation:
        kw["attn_implementation"] = s.attn_implementation
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kw)
    # No KV cache in training. Besides being useless there, a cache object disables transformers'
    # packed-sequence detection (position-id resets -> block-diagonal mask), so packed samples would
    # attend to each other. The saved model gets use_cache=True back.
    model.config.use_cache = False
    if s.lora is not None:
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(
            r=s.lora.r,
            lora_alpha=s.lora.alpha,
            lora_dropout=s.lora.dropout,
            target_modules=s.lora.target_modules,
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, cfg)
        if s.gradient_checkpointing:
            model.enable_input_require_grads()
    return model


# ---------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------


def checkpoint_is_complete(path: Path) -> bool:
    """A Trainer checkpoint is complete when its trainer_state.json (written last) parses, names
    the same step, and no JIT-checkpoint 'in progress' sentinel is left."""
    m = _CKPT_RE.match(path.name)
    if not m or not path.is_dir() or (path / "checkpoint-is-incomplete.txt").exists():
        return False
    try:
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return state.get("global_step") == int(m.group(1))


def last_complete_checkpoint(ckpt_dir: str | os.PathLike) -> Path | None:
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return None
    found = sorted((int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := _CKPT_RE.match(p.name)))
    for _, path in reversed(found):
        if checkpoint_is_complete(path):
            return path
        log.warning("ignoring incomplete checkpoint %s", path)
    return None


def _drop_newer_incomplete(ckpt_dir: Path, keep: Path | None) -> None:
    keep_step = int(_CKPT_RE.match(keep.name).group(1)) if keep else -1
    for p in ckpt_dir.iterdir() if ckpt_dir.is_dir() else []:
        m = _CKPT_RE.match(p.name)
        if m and int(m.group(1)) > keep_step:
            log.warning("removing incomplete checkpoint %s", p)
            shutil.rmtree(p, ignore_errors=True)


FINGERPRINT_FILE = "run_fingerprint.json"


def invalidate_stale_checkpoints(ckpt_dir: Path, fingerprint: str) -> None:
    """Checkpoints of a run with other hyper-parameters or data must not be resumed: remove them."""
    marker = ckpt_dir / FINGERPRINT_FILE
    if ckpt_dir.is_dir() and any(_CKPT_RE.match(p.name) for p in ckpt_dir.iterdir()):
        try:
            old = json.loads(marker.read_text(encoding="utf-8")).get("fingerprint")
        except (OSError, json.JSONDecodeError):
            old = None
        if old != fingerprint:
            log.warning(
                "checkpoints in %s belong to a different run (settings or data changed): starting over", ckpt_dir
            )
            shutil.rmtree(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    write_json(marker, {"fingerprint": fingerprint})


# ---------------------------------------------------------------------------------------------
# distributed helpers
# ---------------------------------------------------------------------------------------------


def _ensure_dist_env() -> None:
    """DeepSpeed needs a process group even for one process: fake a world of 1 when not launched."""
    if "WORLD_SIZE" in os.environ:
        return
    os.environ.update(
        RANK="0",
        LOCAL_RANK="0",
        WORLD_SIZE="1",
        LOCAL_WORLD_SIZE="1",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(free_port()),
    )


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _hosts() -> list[str]:
    """The hosts the ranks ran on (sorted, once each); called by every rank when distributed."""
    import socket

    import torch.distributed as dist

    host = socket.gethostname()
    if not (dist.is_available() and dist.is_initialized()):
        return [host]
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, host)
    return sorted(set(gathered))


def _peak_memory_mb() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------


def _make_trainer_class():
    from transformers import Trainer

    class EvolTrainer(Trainer):
        """Trainer that logs training tokens/s (non-padding) and peak memory with every loss."""

        _tok_count = 0
        _tok_t0: float | None = None

        def compute_loss(self, model, inputs, *args, **kwargs):
            if self._tok_t0 is None:
                self._tok_t0 = time.perf_counter()
            if "attention_mask" in inputs:
                self._tok_count += int(inputs["attention_mask"].sum())
            else:  # packed: no padding at all
                self._tok_count += int(inputs["input_ids"].numel())
            return super().compute_loss(model, inputs, *args, **kwargs)

        def log(self, logs: dict, *args, **kwargs) -> None:
            if "loss" in logs and self._tok_t0 is not None:
                now = time.perf_counter()
                world = int(os.environ.get("WORLD_SIZE", "1"))
                dt = max(now - self._tok_t0, 1e-9)
                logs["tokens_per_s"] = round(self._tok_count * world / dt, 1)
                logs["peak_mem_mb"] = round(_peak_memory_mb(), 1)
                self._tok_count, self._tok_t0 = 0, now
            super().log(logs, *args, **kwargs)

    return EvolTrainer


def extra_callbacks() -> list:
    """The callbacks named by ``$EVOLCODER_TRAIN_CALLBACKS`` (see :data:`CALLBACKS_ENV`)."""
    import importlib

    out = []
    for spec in filter(None, (s.strip() for s in os.environ.get(CALLBACKS_ENV, "").split(","))):
        module, _, attr = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError, ValueError) as exc:
            raise EvolcoderError(f"{CALLBACKS_ENV}: cannot load {spec!r} ({exc})") from None
        out.append(factory())
    return out


def training_arguments(s: TrainSettings, ckpt_dir: Path, world_size: int, use_cuda: bool) -> Any:
    from transformers import TrainingArguments

    if s.precision == "fp16" and not use_cuda:
        raise EvolcoderError("train.precision=fp16 needs a GPU; use bf16 or fp32 on CPU")
    kw: dict[str, Any] = dict(
        output_dir=str(ckpt_dir),
        per_device_train_batch_size=s.micro_batch_size,
        gradient_accumulation_steps=gradient_accumulation(s.global_batch_size, s.micro_batch_size, world_size),
        num_train_epochs=float(s.num_epochs),
        max_steps=s.max_steps if s.max_steps else -1,
        learning_rate=s.learning_rate,
        lr_scheduler_type=s.lr_scheduler,
        warmup_steps=s.warmup_steps,
        weight_decay=s.weight_decay,
        max_grad_norm=s.max_grad_norm,
        bf16=s.precision == "bf16",
        fp16=s.precision == "fp16",
        logging_strategy="steps",
        logging_steps=s.logging_steps,
        save_strategy="steps",
        save_steps=s.save_steps,
        save_total_limit=s.save_total_limit,
        seed=s.seed,
        data_seed=s.seed,
        report_to=[],
        remove_unused_columns=False,
        dataloader_num_workers=s.dataloader_num_workers,
        dataloader_pin_memory=use_cuda,
        disable_tqdm=True,
        use_cpu=not use_cuda,
        enable_jit_checkpoint=s.checkpoint_on_sigterm,
        ddp_find_unused_parameters=False if world_size > 1 else None,
    )
    # transformers 5 renamed gradient_checkpointing to activation_checkpointing (old name deprecated)
    import inspect

    gc_name = (
        "activation_checkpointing"
        if "activation_checkpointing" in inspect.signature(TrainingArguments).parameters
        else "gradient_checkpointing"
    )
    kw[gc_name] = s.gradient_checkpointing
    if s.gradient_checkpointing:
        kw[f"{gc_name}_kwargs"] = {"use_reentrant": False}
    if not use_cuda and world_size > 1:
        kw["ddp_backend"] = "gloo"
    if s.deepspeed:
        try:  # the Trainer imports it only when it builds the engine: fail here, naming the package
            import deepspeed  # noqa: F401
        except ImportError:
            raise EvolcoderError(
                f"train.deepspeed: {s.deepspeed} needs the deepspeed package (envs/gpu.yaml)"
            ) from None
        kw["deepspeed"] = str(deepspeed_config_path(s.deepspeed))
    try:
        return TrainingArguments(**kw)
    except ValueError as exc:
        raise EvolcoderError(f"train settings rejected by transformers: {exc}") from None


def run_training(
    *, data: str | None, tokenized: str | None, base_model: str, out_dir: str, s: TrainSettings, raw_settings: dict
) -> dict:
    """Train (or resume) and write ``out_dir/model``. Returns the training manifest."""
    import torch

    from evolcoder.models import resolve

    os.environ.setdefault("DS_BUILD_OPS", "0")
    if s.deepspeed:
        _ensure_dist_env()
    out = Path(out_dir)
    ckpt_dir = out / "checkpoints"
    final_dir = out / "model"
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = torch.cuda.is_available()
    model_dir = resolve(base_model)

    # TrainingArguments first: with ZeRO-3 it makes from_pretrained load the model partitioned.
    args = training_arguments(s, ckpt_dir, world_size, use_cuda)

    tokenizer = load_tokenizer(model_dir)
    if is_chat(s.prompt_template):
        prepare_tokenizer(tokenizer, base_model, s.chat_template)  # saved with the model, template included
    if tokenized:
        tokd = load_tokenized(tokenized)
        check_tokenized(tokd, tokenizer, s, data)
    elif data:
        tokd, _ = tokenize_file(data, model_dir, raw_settings, base_model)
    else:
        raise EvolcoderError("evolcoder train: give --data and/or --tokenized")
    dataset = TrainDataset(tokd)
    collator = (
        packing_collator(flash_attn_kwargs=(s.attn_implementation or "").startswith("flash"))
        if s.packing
        else PaddingCollator(tokenizer.pad_token_id, 8 if use_cuda else None)
    )

    model = load_model(model_dir, s)
    EvolTrainer = _make_trainer_class()
    callbacks = extra_callbacks()
    trainer = EvolTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    for cb in callbacks:
        if hasattr(cb, "trainer"):
            cb.trainer = trainer

    fingerprint = trajectory_fingerprint(s, tokd.meta.get("data_sha256"), world_size)
    if _is_main():
        invalidate_stale_checkpoints(ckpt_dir, fingerprint)
    _barrier()
    resume = last_complete_checkpoint(ckpt_dir)
    if _is_main():
        _drop_newer_incomplete(ckpt_dir, resume)
    _barrier()
    if resume:
        log.info("resuming from %s", resume)
    t0 = time.time()
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    wall = time.time() - t0
    state = trainer.state
    history = list(state.log_history)
    if _is_main():
        write_json(out / "log_history.json", history)  # plotted by `evolcoder plot-training`
    if state.global_step < state.max_steps:
        raise EvolcoderError(
            f"training stopped at step {state.global_step} of {state.max_steps} (SIGTERM?); "
            f"a checkpoint is in {ckpt_dir}: run the same command again to resume"
        )

    # ---- final model ----------------------------------------------------------------------
    partial = out / "model.partial"
    if _is_main():
        shutil.rmtree(partial, ignore_errors=True)
    _barrier()
    if s.lora is not None:
        adapter_dir = out / "adapter"
        trainer.save_model(str(adapter_dir))
        _barrier()
        if _is_main():
            _merge_lora(model_dir, adapter_dir, partial)
    else:
        trainer.save_model(str(partial))
    _barrier()

    hosts = _hosts()  # a collective: every rank
    losses = [h["loss"] for h in history if "loss" in h]
    tps = [h["tokens_per_s"] for h in history if "tokens_per_s" in h]
    manifest: dict = {}
    if _is_main():
        if s.lora is None:
            cfg_path = partial / "config.json"
            if cfg_path.exists():  # trained with use_cache=False
                cfg = json.loads(cfg_path.read_text())
                cfg["use_cache"] = True
                cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")
        tokenizer.save_pretrained(partial)
        if is_chat(s.prompt_template):
            _stop_at_end_of_turn(partial, tokenizer)
        extra = {
            "base_model": base_model,
            "base_model_resolved": model_dir,
            "data_sha256": tokd.meta.get("data_sha256"),
            "tokenized": {k: v for k, v in tokd.meta.items() if k != "stats"},
            "tokenization_stats": tokd.meta.get("stats"),
            "hyperparameters": {
                **s.to_dict(),
                "world_size": world_size,
                "gradient_accumulation_steps": args.gradient_accumulation_steps,
                "effective_batch_size": s.micro_batch_size * world_size * args.gradient_accumulation_steps,
                "deepspeed_config": args.deepspeed,
            },
            "steps_done": state.global_step,
            "max_steps": state.max_steps,
            "epochs_done": state.epoch,
            "final_loss": losses[-1] if losses else None,
            "mean_train_loss": result.training_loss,
            "final_learning_rate": next((h["learning_rate"] for h in reversed(history) if "learning_rate" in h), None),
            "resumed_from": str(resume) if resume else None,
            "train_seconds_this_run": round(wall, 2),
            "tokens_per_s_mean": round(sum(tps) / len(tps), 1) if tps else None,
            "peak_mem_mb": round(_peak_memory_mb(), 1),
            "device": torch.cuda.get_device_name(0) if use_cuda else "cpu",
            "nodes": len(hosts),
            "hosts": hosts,
        }
        manifest = write_manifest(
            partial / "training_manifest.json",
            stage="train",
            inputs={"data": data, "tokenized": tokenized} if tokenized else {"data": data},
            settings=raw_settings,
            extra=extra,
        )
        write_model_card(partial, extra, {"model_name": out.name}, _card_prompt(tokenizer, s))
        if final_dir.exists():
            shutil.rmtree(final_dir)
        partial.rename(final_dir)
        if not s.keep_checkpoints:
            shutil.rmtree(ckpt_dir, ignore_errors=True)
        log.info("final model -> %s (step %d, loss %s)", final_dir, state.global_step, extra["final_loss"])
    _barrier()
    return manifest


def _merge_lora(model_dir: str, adapter_dir: Path, dest: Path) -> None:
    """Reload the base model in full precision, merge the adapter into it and save a plain model."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    try:  # a ZeRO-3 run leaves a global that would make from_pretrained partition the model
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()
    except ImportError:
        pass
    base = AutoModelForCausalLM.from_pretrained(model_dir, config=model_config(model_dir), dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.config.use_cache = True
    merged.save_pretrained(dest)


def _stop_at_end_of_turn(model_dir: Path, tokenizer: Any) -> None:
    """A chat-trained model ends its answers with the template's end-of-turn token: generation stops
    there too (generation_config.eos_token_id lists it beside the tokenizer's EOS)."""
    eot = end_of_turn_id(tokenizer)
    path = model_dir / "generation_config.json"
    cfg = json.loads(path.read_text()) if path.exists() else {}
    eos = cfg.get("eos_token_id", tokenizer.eos_token_id)
    eos = [e for e in (eos if isinstance(eos, list) else [eos]) if e is not None]
    if eot is not None and eot not in eos:
        eos.append(eot)
    cfg["eos_token_id"] = eos[0] if len(eos) == 1 else eos
    path.write_text(json.dumps(cfg, indent=2) + "\n")


def _card_prompt(tokenizer: Any, s: TrainSettings) -> tuple[str, str]:
    """(how prompts are built, an example) for the model card."""
    from evolcoder.chat import generation_prompt

    instruction = "Write a Python function that returns the n-th Fibonacci number."
    if is_chat(s.prompt_template):
        how = "the tokenizer's chat template (`tokenizer.apply_chat_template`, `add_generation_prompt=True`)"
        if s.chat_template:
            how += f", supplied as `{s.chat_template}`"
        return how, generation_prompt(tokenizer, instruction, s.system_prompt)
    tmpl = template(s.prompt_template)
    return f"the `{s.prompt_template}` template (Alpaca style)", render_prompt({"instruction": instruction}, tmpl)
