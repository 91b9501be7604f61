"""The one launcher: run a command on every GPU of the current allocation (one process per GPU).

``evolcoder train`` re-executes itself through :func:`command` when the job has several GPUs (or
``train.launcher`` asks for torchrun/deepspeed); the same module runs any other module that way:

    python -m evolcoder.launch train --data … --out-dir …          # the train stage, by hand
    python -m evolcoder.launch --nproc 4 train …                    # force a process count
    python -m evolcoder.launch --module evolcoder.train.gpucheck    # check the allocation itself

The process count is the number of GPUs this job may use: ``CUDA_VISIBLE_DEVICES`` (set by SLURM
for ``--gpus``/``--gres`` jobs, also inside the executor plugin's ``srun`` step where
``SLURM_JOB_GPUS`` is unset), else ``SLURM_GPUS_ON_NODE``, else the GPUs torch sees, else 1.
``EVOLCODER_NPROC`` overrides it. With one process the stage runs directly, without torchrun.
With several, ``torch.distributed.run --standalone`` (or DeepSpeed's launcher) starts them on this
node with RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set, which the HF Trainer and
DeepSpeed read.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping, Sequence

DEFAULT_MODULE = "evolcoder.cli"
LAUNCHED_ENV = "LOCAL_RANK"  # set by torchrun / deepspeed in every process they start
LAUNCHERS = ("torchrun", "deepspeed")


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for MASTER_PORT)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launched(env: Mapping[str, str] | None = None) -> bool:
    """Whether this process was started by a launcher (it is one of the ranks)."""
    return LAUNCHED_ENV in (os.environ if env is None else env)


def visible_gpus(env: Mapping[str, str] | None = None) -> int | None:
    """GPUs granted to this job by the environment, or None when the environment does not say."""
    env = os.environ if env is None else env
    cvd = env.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:
        cvd = cvd.strip()
        if cvd in ("", "-1", "NoDevFiles"):
            return 0
        return len([d for d in cvd.split(",") if d.strip()])
    for key in ("SLURM_GPUS_ON_NODE", "SLURM_GPUS_PER_NODE"):
        val = env.get(key, "").split(":")[-1]
        if val.isdigit():
            return int(val)
    return None


def process_count(
    env: Mapping[str, str] | None = None, *, probe_torch: bool = True, requested: int | None = None
) -> int:
    """How many processes to start: ``$EVOLCODER_NPROC``, else ``requested`` (e.g. ``train.num_gpus``),
    else one per usable GPU, at least one."""
    env = os.environ if env is None else env
    forced = env.get("EVOLCODER_NPROC", "").strip()
    if forced:
        if not forced.isdigit() or int(forced) < 1:
            raise SystemExit(f"evolcoder: error: EVOLCODER_NPROC must be a positive integer, got {forced!r}")
        return int(forced)
    if requested is not None:
        return max(1, int(requested))
    n = visible_gpus(env)
    if n is None and probe_torch:
        try:
            import torch

            n = torch.cuda.device_count()
        except Exception:  # torch missing or broken CUDA: one process
            n = 0
    return max(1, n or 0)


def command(
    args: Sequence[str],
    nproc: int,
    *,
    launcher: str = "torchrun",
    module: str = DEFAULT_MODULE,
    python: str = sys.executable,
    env: Mapping[str, str] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """(argv, env) that run ``module args`` on ``nproc`` processes of this node with ``launcher``
    (torchrun, or DeepSpeed's launcher); one process and torchrun: the module itself."""
    env = dict(os.environ if env is None else env)
    env.setdefault("DS_BUILD_OPS", "0")
    if launcher not in LAUNCHERS:
        raise ValueError(f"launcher must be one of {', '.join(LAUNCHERS)}, not {launcher!r}")
    if launcher == "torchrun":
        if nproc <= 1:
            return [python, "-m", module, *args], env
        return [
            python,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nnodes",
            "1",
            "--nproc-per-node",
            str(nproc),
            "-m",
            module,
            *args,
        ], env
    argv = [python, "-m", "deepspeed.launcher.runner", "--no_local_rank"]
    cvd = env.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:
        # the deepspeed launcher ignores CUDA_VISIBLE_DEVICES when --num_gpus is given: narrow it instead
        env["CUDA_VISIBLE_DEVICES"] = ",".join([d for d in cvd.split(",") if d.strip()][:nproc])
    else:
        argv.append(f"--num_gpus={nproc}")
    port = int(env["MASTER_PORT"]) if env.get("MASTER_PORT") else free_port()
    return argv + ["--master_port", str(port), "--module", module, *args], env


def build_command(
    args: Sequence[str], nproc: int, *, module: str = DEFAULT_MODULE, python: str = sys.executable
) -> list[str]:
    """The torchrun command line that runs ``module args`` on ``nproc`` local processes."""
    return command(args, nproc, module=module, python=python, env={})[0]


def describe(nproc: int, argv: Sequence[str]) -> str:
    """The launch line the logs show (and the SLURM test reads)."""
    return (
        f"evolcoder.launch: {nproc} process(es) (CUDA_VISIBLE_DEVICES="
        f"{os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}): {' '.join(argv)}"
    )


USAGE = "usage: python -m evolcoder.launch [--nproc auto|N] [--module M] [--dry-run] [--] ARGS..."


def split_argv(argv: Sequence[str]) -> tuple[dict, list[str]]:
    """Launcher options (leading ones only) and the module's arguments (everything after)."""
    opts: dict = {"nproc": "auto", "module": DEFAULT_MODULE, "dry_run": False}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            i += 1
            break
        if a in ("-h", "--help"):
            print(USAGE + "\n\n" + (__doc__ or ""))
            raise SystemExit(0)
        if a == "--dry-run":
            opts["dry_run"] = True
        elif a.split("=", 1)[0] in ("--nproc", "--module"):
            key, eq, val = a.partition("=")
            if not eq:
                if i + 1 >= len(argv):
                    raise SystemExit(f"evolcoder.launch: {key} needs a value\n{USAGE}")
                i += 1
                val = argv[i]
            opts[key[2:]] = val
        else:
            break
        i += 1
    return opts, list(argv[i:])


def main(argv: Sequence[str] | None = None) -> None:
    opts, args = split_argv(sys.argv[1:] if argv is None else argv)
    if opts["nproc"] == "auto":
        nproc = process_count()
    elif str(opts["nproc"]).isdigit() and int(opts["nproc"]) >= 1:
        nproc = int(opts["nproc"])
    else:
        raise SystemExit(f"evolcoder.launch: --nproc must be 'auto' or a positive integer, got {opts['nproc']!r}")
    cmd = build_command(args, nproc, module=opts["module"])
    print(describe(nproc, cmd), file=sys.stderr, flush=True)
    if opts["dry_run"]:
        print(" ".join(cmd))
        return
    sys.stdout.flush()
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
