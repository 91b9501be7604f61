"""The `evolcoder train` command: settings, the launcher (torchrun, srun), then :mod:`evolcoder.train.run`."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
from pathlib import Path

import click

from evolcoder.io import parse_json_option

log = logging.getLogger(__name__)


@click.command(
    help="Fine-tune a causal LM on instruction records (HF Trainer; DeepSpeed ZeRO, LoRA, "
    "packing optional). Resumes from the last complete checkpoint in OUT_DIR/checkpoints."
)
@click.option("--data", default=None, type=click.Path(dir_okay=False), help="Instruction records (JSONL).")
@click.option(
    "--tokenized",
    default=None,
    type=click.Path(dir_okay=False),
    help="Cache from `evolcoder tokenize` (checked against --data, tokenizer, template, length).",
)
@click.option(
    "--out-dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Run folder: model/, checkpoints/, log_history.json (plotted by `evolcoder plot-training`).",
)
@click.option(
    "--settings-json",
    default=None,
    help="The train: section without model_name and resources (base_model: the model spec), JSON or a file.",
)
def cli(data: str | None, tokenized: str | None, out_dir: str, settings_json: str | None) -> None:
    from evolcoder import launch
    from evolcoder.errors import EvolcoderError
    from evolcoder.train.settings import gradient_accumulation, parse_settings

    raw = parse_json_option(settings_json, "settings-json")
    s = parse_settings(raw)
    if not data and not tokenized:
        raise EvolcoderError("evolcoder train: give --data and/or --tokenized")
    # one process per GPU of the allocation (or train.num_gpus) on every node of the SLURM job:
    # re-executed under the launcher (srun + one torchrun per node when the job has several nodes)
    nproc = (
        1 if launch.launched() else launch.process_count(requested=s.num_gpus if isinstance(s.num_gpus, int) else None)
    )
    hosts, cpus = ([], None) if launch.launched() else launch.slurm_allocation()
    if not launch.launched() and (nproc > 1 or s.launcher != "none" or len(hosts) > 1):
        nodes = max(1, len(hosts))
        gradient_accumulation(s.global_batch_size, s.micro_batch_size, nproc * nodes)  # fail before launching
        launcher = s.launcher if s.launcher != "none" else "torchrun"
        train_args = ["train", *_train_argv(data, tokenized, out_dir, raw)]
        report_dir = Path(out_dir) / "launch"
        if nodes > 1:
            shutil.rmtree(report_dir, ignore_errors=True)
            argv, env = launch.multinode_command(
                train_args, nproc, hosts, launcher=launcher, cpus_per_task=cpus, report_dir=report_dir
            )
        else:
            argv, env = launch.command(train_args, nproc, launcher=launcher)
        click.echo(launch.describe(nproc, argv, nodes=nodes), err=True)
        rc = _run_forwarding_signals(argv, env)
        if rc != 0:
            failed = launch.failure_report(report_dir) if nodes > 1 else None
            raise EvolcoderError(
                f"distributed training ({launcher}{f', {nodes} nodes' if nodes > 1 else ''}) "
                + (f"failed: {failed}" if failed else f"exited with status {rc}")
                + f"; rerun to resume from the last checkpoint in {out_dir}/checkpoints"
            )
        return
    from evolcoder.train.run import run_training

    manifest = run_training(
        data=data, tokenized=tokenized, base_model=s.base_model, out_dir=out_dir, s=s, raw_settings=raw
    )
    if manifest:
        click.echo(
            f"trained {manifest['steps_done']} steps, final loss {manifest['final_loss']} -> "
            f"{os.path.join(out_dir, 'model')}"
        )


def _train_argv(data: str | None, tokenized: str | None, out_dir: str, settings: dict) -> list[str]:
    argv = []
    if data:
        argv += ["--data", data]
    if tokenized:
        argv += ["--tokenized", tokenized]
    return [*argv, "--out-dir", out_dir, "--settings-json", json.dumps(settings)]


def _run_forwarding_signals(argv: list[str], env: dict[str, str]) -> int:
    """Run the launcher; SIGTERM/SIGINT sent to us (SLURM preemption, scancel) reach it too, so the
    workers can write their SIGTERM checkpoint."""
    proc = subprocess.Popen(argv, env=env)

    def forward(signum, _frame):
        proc.send_signal(signum)

    old = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return proc.wait()
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
