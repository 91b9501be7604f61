"""Fine-tuning settings: one entry of the ``train:`` section of config.yaml, validated.

Pure logic, no torch: the Snakefile may import this to compute the tokenisation cache key.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

from evolcoder.config import Settings
from evolcoder.config import default_factory as _default
from evolcoder.errors import EvolcoderError
from evolcoder.io import sha256_json

DS_PRESETS = ("zero2", "zero3", "zero3_offload")
LAUNCHERS = ("none", "torchrun", "deepspeed")
PRECISIONS = ("fp32", "fp16", "bf16")


@dataclass
class LoraSettings(Settings):
    """``train.lora`` (defaults and documentation: the schema)."""

    SECTION: ClassVar[str] = "train.lora"

    r: int = _default(SECTION, "r")
    alpha: float = _default(SECTION, "alpha")
    dropout: float = _default(SECTION, "dropout")
    target_modules: list[str] | str = _default(SECTION, "target_modules")


@dataclass
class TokenizeSettings(Settings):
    """What ``evolcoder tokenize`` reads: the keys of the ``train`` section that change the tokenised data
    (everything else is a trainer hyper-parameter). The keys the schema requires have the paper's values
    here, for the command used alone."""

    SECTION: ClassVar[str] = "train"
    WHERE: ClassVar[str] = "tokenize settings"

    base_model: str = "smollm2-135m-instruct"  # model spec whose tokenizer is used
    model_max_length: int = 2048
    prompt_template: str = _default(SECTION, "prompt_template")  # name under templates/train/, a JSON path, or chat
    chat_template: str | None = _default(SECTION, "chat_template")  # prompt_template chat: a .jinja file or chatml
    system_prompt: str | None = _default(SECTION, "system_prompt")  # prompt_template chat: an optional system turn

    def check(self) -> None:
        _check_templates(self)


TOKENIZE_KEYS = tuple(f.name for f in dataclasses.fields(TokenizeSettings))


@dataclass
class TrainSettings(Settings):
    """One fine-tuning run: the config's ``train`` section (defaults and documentation: the schema;
    the keys the schema requires have the paper's values here, for the command used alone)."""

    SECTION: ClassVar[str] = "train"

    base_model: str = TokenizeSettings.base_model
    model_max_length: int = TokenizeSettings.model_max_length
    prompt_template: str = TokenizeSettings.prompt_template
    chat_template: str | None = TokenizeSettings.chat_template
    system_prompt: str | None = TokenizeSettings.system_prompt
    global_batch_size: int = 512  # effective batch size (samples per optimizer step)
    micro_batch_size: int = 4  # per device; grad accumulation is derived
    learning_rate: float = 2e-5
    num_epochs: float = _default(SECTION, "num_epochs")
    max_steps: int | None = _default(SECTION, "max_steps")  # cap (smoke runs); None = full epochs
    warmup_steps: int = _default(SECTION, "warmup_steps")
    lr_scheduler: str = _default(SECTION, "lr_scheduler")
    weight_decay: float = _default(SECTION, "weight_decay")
    max_grad_norm: float = _default(SECTION, "max_grad_norm")
    precision: str = _default(SECTION, "precision")
    gradient_checkpointing: bool = _default(SECTION, "gradient_checkpointing")
    deepspeed: str | None = _default(SECTION, "deepspeed")  # None | zero2 | zero3 | zero3_offload | JSON
    save_steps: int = _default(SECTION, "save_steps")
    save_total_limit: int | None = _default(SECTION, "save_total_limit")
    logging_steps: int = _default(SECTION, "logging_steps")
    seed: int = _default(SECTION, "seed")
    packing: bool = _default(SECTION, "packing")  # padding-free batches
    lora: LoraSettings | None = _default(SECTION, "lora")
    launcher: str = _default(SECTION, "launcher")  # none | torchrun | deepspeed
    num_gpus: int | str | None = _default(SECTION, "num_gpus")  # None/"auto": the GPUs the job was granted
    checkpoint_on_sigterm: bool = _default(SECTION, "checkpoint_on_sigterm")
    keep_checkpoints: bool = _default(SECTION, "keep_checkpoints")
    attn_implementation: str | None = _default(SECTION, "attn_implementation")
    dataloader_num_workers: int = _default(SECTION, "dataloader_num_workers")
    extra: dict = field(default_factory=dict)  # keys kept for the record only (_IGNORED)

    @classmethod
    def known_keys(cls) -> set[str]:
        return super().known_keys() - {"extra"}

    @classmethod
    def from_dict(cls, d: dict | None) -> TrainSettings:
        d = dict(d or {})
        extra = {k: d.pop(k) for k in list(d) if k in _IGNORED}
        lora = d.get("lora")
        if lora in (False, {}):
            d["lora"] = None
        elif lora is True:
            d["lora"] = LoraSettings()
        elif isinstance(lora, dict):
            d["lora"] = LoraSettings.from_dict(lora)
        elif lora is not None:
            raise EvolcoderError("train.lora: expected null or a mapping {r, alpha, dropout, target_modules}")
        s = super().from_dict(d)
        s.extra = extra
        return s

    def check(self) -> None:
        _check(self)

    # ---- derived -------------------------------------------------------------------------------
    def grad_accum(self, world_size: int) -> int:
        return gradient_accumulation(self.global_batch_size, self.micro_batch_size, world_size)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        extra = d.pop("extra")
        d.update(extra)
        return d


# Settings that do not change the training trajectory (a checkpoint stays valid when they change).
_NOT_TRAJECTORY = {
    "save_steps",
    "save_total_limit",
    "logging_steps",
    "checkpoint_on_sigterm",
    "keep_checkpoints",
    "dataloader_num_workers",
    "launcher",
    "extra",
}


def trajectory_fingerprint(s: TrainSettings, data_sha256: str | None, world_size: int) -> str:
    """Hash of what a checkpoint depends on: resuming under a different one would mix two runs."""
    d = {k: v for k, v in dataclasses.asdict(s).items() if k not in _NOT_TRAJECTORY}
    return sha256_json({"settings": d, "data": data_sha256, "world_size": world_size})[:16]


def gradient_accumulation(global_batch_size: int, micro_batch_size: int, world_size: int) -> int:
    """Steps of accumulation so that micro x world x accum == the global batch size the user set."""
    per_step = micro_batch_size * world_size
    if global_batch_size % per_step:
        raise EvolcoderError(
            f"train.global_batch_size={global_batch_size} is not a multiple of micro_batch_size x "
            f"world size = {micro_batch_size} x {world_size} = {per_step}"
        )
    return global_batch_size // per_step


# keys config.yaml may carry that the trainer does not use
_IGNORED = {"checkpoint", "description"}


def parse_settings(raw: dict[str, Any]) -> TrainSettings:
    """Validate a settings dict; unknown keys are an error naming the key."""
    return TrainSettings.from_dict(raw)


def _check(s: TrainSettings) -> None:
    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise EvolcoderError(f"train.{msg}")

    need(isinstance(s.model_max_length, int) and s.model_max_length > 1, "model_max_length must be an int > 1")
    for k in ("global_batch_size", "micro_batch_size", "save_steps", "logging_steps"):
        v = getattr(s, k)
        need(isinstance(v, int) and not isinstance(v, bool) and v > 0, f"{k} must be a positive int, got {v!r}")
    need(
        s.max_steps is None or (isinstance(s.max_steps, int) and s.max_steps > 0),
        f"max_steps must be null or a positive int, got {s.max_steps!r}",
    )
    need(float(s.learning_rate) > 0, "learning_rate must be > 0")
    s.learning_rate = float(s.learning_rate)
    need(float(s.num_epochs) > 0, "num_epochs must be > 0")
    need(isinstance(s.warmup_steps, int) and s.warmup_steps >= 0, "warmup_steps must be an int >= 0")
    need(s.precision in PRECISIONS, f"precision must be one of {PRECISIONS}, got {s.precision!r}")
    need(s.launcher in LAUNCHERS, f"launcher must be one of {LAUNCHERS}, got {s.launcher!r}")
    need(
        s.num_gpus in (None, "auto") or (isinstance(s.num_gpus, int) and s.num_gpus >= 1),
        f"num_gpus must be null, 'auto' or an int >= 1, got {s.num_gpus!r}",
    )
    need(
        s.micro_batch_size <= s.global_batch_size,
        f"micro_batch_size ({s.micro_batch_size}) exceeds global_batch_size ({s.global_batch_size})",
    )
    if s.deepspeed is not None:
        deepspeed_config_path(s.deepspeed)  # raises when unknown
    if s.lora is not None:
        need(s.lora.r > 0 and s.lora.alpha > 0, "lora.r and lora.alpha must be > 0")
    _check_templates(s)


def _check_templates(s: TokenizeSettings | TrainSettings) -> None:
    template(s.prompt_template)  # raises when unknown
    if s.chat_template:
        from evolcoder.chat import chat_template_text

        chat_template_text(s.chat_template)  # raises when unknown


def deepspeed_config_path(value: str) -> Path:
    """A preset name (zero2, zero3, zero3_offload) or a path to a DeepSpeed JSON config."""
    if value in DS_PRESETS:
        return Path(str(resources.files("evolcoder") / "ds_configs" / f"{value}.json"))
    path = Path(value)
    if not path.is_file():
        raise EvolcoderError(f"train.deepspeed: {value!r} is neither one of {DS_PRESETS} nor a JSON file")
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise EvolcoderError(f"train.deepspeed: {path} is not valid JSON ({exc.msg})") from None
    return path


def template(name: str) -> dict[str, str]:
    """Load a training prompt template: {"prompt_input": ..., "prompt_no_input": ...}; ``chat``: the
    base tokenizer's chat template (evolcoder.chat), marked {"chat": "tokenizer"}."""
    if name == "chat":
        return {"chat": "tokenizer"}
    if name.endswith(".json") or "/" in name:
        path = Path(name)
        if not path.is_file():
            raise EvolcoderError(f"train.prompt_template: file {name} not found")
        text = path.read_text(encoding="utf-8")
    else:
        res = resources.files("evolcoder") / "templates" / "train" / f"{name}.json"
        if not res.is_file():
            raise EvolcoderError(f"train.prompt_template: no builtin template {name!r}")
        text = res.read_text(encoding="utf-8")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EvolcoderError(f"train.prompt_template {name}: not valid JSON ({exc.msg})") from None
    for key in ("prompt_input", "prompt_no_input"):
        if not isinstance(obj.get(key), str):
            raise EvolcoderError(f"train.prompt_template {name}: missing string {key!r}")
    return {"prompt_input": obj["prompt_input"], "prompt_no_input": obj["prompt_no_input"]}


def tokenize_settings(raw: dict[str, Any]) -> dict[str, Any]:
    """The slice of a train entry that the tokenised cache depends on (what `evolcoder tokenize` reads)."""
    return TokenizeSettings.from_dict({k: raw[k] for k in TOKENIZE_KEYS if k in raw}).to_dict()
