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

Several nodes (a SLURM job of ``--nodes`` > 1, as the train rule asks for with
``train.resources.nodes``): the command becomes one ``srun`` task per node
(``--ntasks-per-node=1 --kill-on-bad-exit=1``), each running this module as a *node agent*
(``--node-agent``), which starts torchrun for its node (``--nnodes N``, c10d rendezvous at the first
host of the job's node list, ``scontrol show hostnames``, on a free port, ``--max-restarts 0``, a
bounded ``join_timeout``) or DeepSpeed's per-node launcher (``--node_rank``, ``--master_addr``).
When a rank fails, its node agent prints one line naming the node and the rank and leaves it in
``--report-dir``; srun then stops every other node, and the caller reads the line from there.
"""

from __future__ import annotations

import base64
import collections
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

DEFAULT_MODULE = "evolcoder.cli"
LAUNCHED_ENV = "LOCAL_RANK"  # set by torchrun / deepspeed in every process they start
LAUNCHERS = ("torchrun", "deepspeed")
# seconds the nodes have to meet at the rendezvous before the job fails (torchrun's join_timeout)
RDZV_TIMEOUT_ENV = "EVOLCODER_RDZV_TIMEOUT"
DEFAULT_RDZV_TIMEOUT = 300


def free_port(host: str = "127.0.0.1") -> int:
    """A free TCP port on ``host`` (for MASTER_PORT; "" = every interface, for a rendezvous)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# several nodes
# ---------------------------------------------------------------------------------------------


def _scontrol(*args: str) -> str:
    if shutil.which("scontrol") is None:
        raise SystemExit("evolcoder.launch: error: scontrol not found (a SLURM job without the SLURM client?)")
    proc = subprocess.run(["scontrol", *args], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise SystemExit(f"evolcoder.launch: error: scontrol {' '.join(args)}: {proc.stderr.strip()[:300]}")
    return proc.stdout


def slurm_allocation(env: Mapping[str, str] | None = None) -> tuple[list[str], int | None]:
    """(hostnames, CPUs per task) of this SLURM job, the batch host first; ([], None) outside SLURM.

    The node list comes from ``SLURM_JOB_NODELIST``, else from ``scontrol show job`` (the executor
    plugin removes the SLURM_* variables but SLURM_JOB_ID from its job step), expanded with
    ``scontrol show hostnames``.
    """
    env = os.environ if env is None else env
    job = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")
    if not job:
        return [], None
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    cpt = env.get("SLURM_CPUS_PER_TASK")
    nnodes = env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES")
    if nnodes == "1" and nodelist:  # one node: no need to ask
        return [nodelist], int(cpt) if cpt and cpt.isdigit() else None
    if not nodelist or not cpt:
        info = _scontrol("show", "job", "-o", job)
        m = re.search(r"(?:^|\s)NodeList=(\S+)", info)
        nodelist = nodelist or (m.group(1) if m and m.group(1) != "(null)" else "")
        m = re.search(r"CPUs/Task=(\d+)", info)
        cpt = cpt or (m.group(1) if m else None)
    hosts = _scontrol("show", "hostnames", nodelist).split() if nodelist else []
    return hosts, int(cpt) if cpt and str(cpt).isdigit() else None


def rdzv_timeout(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    val = env.get(RDZV_TIMEOUT_ENV, "").strip() or str(DEFAULT_RDZV_TIMEOUT)
    if not val.isdigit() or int(val) < 1:
        raise SystemExit(
            f"evolcoder.launch: error: {RDZV_TIMEOUT_ENV} must be a positive integer (seconds), got {val!r}"
        )
    return int(val)


def multinode_command(
    args: Sequence[str],
    nproc: int,
    hosts: Sequence[str],
    *,
    launcher: str = "torchrun",
    module: str = DEFAULT_MODULE,
    python: str = sys.executable,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    cpus_per_task: int | None = None,
    report_dir: str | os.PathLike | None = None,
) -> tuple[list[str], dict[str, str]]:
    """(argv, env): one srun task per node of ``hosts``, each a node agent starting ``nproc``
    processes there; the rendezvous (or DeepSpeed's master) is ``hosts[0]``."""
    env = dict(os.environ if env is None else env)
    env.setdefault("DS_BUILD_OPS", "0")
    if launcher not in LAUNCHERS:
        raise ValueError(f"launcher must be one of {', '.join(LAUNCHERS)}, not {launcher!r}")
    if port is None:
        # the port must be free on the first node: probe it when we are there, else derive it from the job
        here = socket.gethostname().split(".")[0] == hosts[0].split(".")[0]
        job = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID") or "0"
        port = free_port("") if here else 20000 + int(job) % 20000 if job.isdigit() else 29400
    n = len(hosts)
    argv = ["srun", f"--nodes={n}", f"--ntasks={n}", "--ntasks-per-node=1", "--kill-on-bad-exit=1", "--overlap"]
    argv += ["--unbuffered"]
    if cpus_per_task:
        argv.append(f"--cpus-per-task={cpus_per_task}")
    argv += [python, "-m", "evolcoder.launch", "--node-agent", "--nodes", ",".join(hosts), "--nproc", str(nproc)]
    argv += ["--port", str(port), "--launcher", launcher, "--module", module, "--rdzv-timeout", str(rdzv_timeout(env))]
    if env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID"):
        argv += ["--rdzv-id", env.get("SLURM_JOB_ID") or env["SLURM_JOBID"]]
    if report_dir is not None:
        argv += ["--report-dir", str(report_dir)]
    return [*argv, "--", *args], env


def node_command(
    args: Sequence[str],
    nproc: int,
    hosts: Sequence[str],
    node_rank: int,
    port: int,
    *,
    launcher: str = "torchrun",
    module: str = DEFAULT_MODULE,
    python: str = sys.executable,
    rdzv_id: str = "evolcoder",
    timeout: int = DEFAULT_RDZV_TIMEOUT,
) -> list[str]:
    """What the node agent of node ``node_rank`` runs: torchrun for this node, with a c10d rendezvous
    at ``hosts[0]:port`` hosted by node 0, or DeepSpeed's per-node launcher."""
    if launcher == "deepspeed":
        world = base64.urlsafe_b64encode(json.dumps({h: list(range(nproc)) for h in hosts}).encode()).decode()
        return [
            python,
            "-m",
            "deepspeed.launcher.launch",
            f"--world_info={world}",
            f"--node_rank={node_rank}",
            f"--master_addr={hosts[0]}",
            f"--master_port={port}",
            "--no_local_rank",
            "--module",
            module,
            *args,
        ]
    return [
        python,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        str(len(hosts)),
        "--nproc-per-node",
        str(nproc),
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        f"{hosts[0]}:{port}",
        "--rdzv-id",
        rdzv_id,
        # node 0 hosts the store (no guessing from hostnames); bounded wait for the others
        "--rdzv-conf",
        f"is_host={1 if node_rank == 0 else 0},join_timeout={timeout},read_timeout={timeout}",
        "--max-restarts",
        "0",
        "-m",
        module,
        *args,
    ]


_ROOT_FIELDS = {
    "host": re.compile(r"^\s*host\s*:\s*(\S+)"),
    "rank": re.compile(r"^\s*rank\s*:\s*(\d+)\s*\(local_rank:\s*(\d+)\)"),
    "exitcode": re.compile(r"^\s*exitcode\s*:\s*(-?\d+)"),
}


def failure_line(
    lines: Sequence[str], *, host: str, node_rank: int, nnodes: int, rc: int, rdzv: str, timeout: int
) -> str:
    """One line saying which node and rank failed, from torchrun's failure summary (its lines)."""
    where = f"node {host} (node {node_rank} of {nnodes})"
    if any("RendezvousTimeoutError" in ln or "RendezvousClosedError" in ln for ln in lines):
        return (
            f"{where}: the rendezvous at {rdzv} did not complete within {timeout} s "
            f"(not every node joined; raise {RDZV_TIMEOUT_ENV} if nodes start slowly)"
        )
    root: dict = {}
    start = next((i for i, ln in enumerate(lines) if "Root Cause" in ln), None)
    for ln in lines[start:] if start is not None else []:
        for key, rx in _ROOT_FIELDS.items():
            m = rx.match(ln)
            if m and key not in root:
                root[key] = m.groups()
    if "rank" in root:
        code = int(root.get("exitcode", (str(rc),))[0])
        how = (
            f"killed by {signal.Signals(-code).name}"
            if code < 0 and -code in signal.valid_signals()
            else f"exit code {code}"
        )
        rank, local = root["rank"]
        return f"rank {rank} (local rank {local}) on node {root.get('host', (host,))[0]} failed ({how})"
    return f"{where}: the launcher exited with status {rc}"


def node_agent(opts: dict, args: list[str]) -> int:
    """Run this node's launcher, pass its output through, and on failure print (and leave in
    ``--report-dir``) one line naming the node and the failed rank."""
    hosts = opts["nodes"].split(",")
    node_rank = int(os.environ.get("SLURM_NODEID") or os.environ.get("SLURM_PROCID") or 0)
    host = socket.gethostname()
    timeout = int(opts["rdzv_timeout"])
    argv = node_command(
        args,
        int(opts["nproc"]),
        hosts,
        node_rank,
        int(opts["port"]),
        launcher=opts["launcher"],
        module=opts["module"],
        rdzv_id=opts["rdzv_id"],
        timeout=timeout,
    )
    env = dict(os.environ)
    cpus = env.get("SLURM_CPUS_PER_TASK", "")
    if cpus.isdigit():
        # each process its share of this node's CPUs (Snakemake set the rule's `threads` instead, and
        # torchrun keeps a value that is set): more threads than cores spin and crawl
        per_rank = str(max(1, int(cpus) // int(opts["nproc"])))
        env.update(OMP_NUM_THREADS=per_rank, MKL_NUM_THREADS=per_rank, OPENBLAS_NUM_THREADS=per_rank)
    print(f"evolcoder.launch: node {host} ({node_rank} of {len(hosts)}): {' '.join(argv)}", file=sys.stderr, flush=True)
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, errors="replace", env=env)
    stopped: list[int] = []

    def forward(signum, _frame):  # srun stopping this node (another one failed), or preemption
        stopped.append(signum)
        proc.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    tail: collections.deque[str] = collections.deque(maxlen=400)
    assert proc.stderr is not None
    for line in proc.stderr:
        sys.stderr.write(line)
        sys.stderr.flush()
        tail.append(line.rstrip("\n"))
    rc = proc.wait()
    if rc != 0:
        if stopped:
            line = f"node {host} (node {node_rank} of {len(hosts)}): stopped by {signal.Signals(stopped[0]).name}"
        else:
            line = failure_line(
                list(tail),
                host=host,
                node_rank=node_rank,
                nnodes=len(hosts),
                rc=rc,
                rdzv=f"{hosts[0]}:{opts['port']}",
                timeout=timeout,
            )
        print(f"evolcoder.launch: error: {line}", file=sys.stderr, flush=True)
        if opts.get("report_dir"):
            report = Path(opts["report_dir"]) / f"node-{node_rank}.json"
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(
                json.dumps(
                    {
                        "time": time.time(),
                        "node": host,
                        "node_rank": node_rank,
                        "stopped": bool(stopped),
                        "rc": rc,
                        "line": line,
                    }
                )
                + "\n"
            )
    return rc


def failure_report(report_dir: str | os.PathLike) -> str | None:
    """The line of the node that failed first (not one stopped because of it), from the node agents'
    reports in ``report_dir``; None when none wrote one."""
    reports = []
    for p in sorted(Path(report_dir).glob("node-*.json")) if Path(report_dir).is_dir() else []:
        try:
            reports.append(json.loads(p.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError):
            continue
    if not reports:
        return None
    first = min(reports, key=lambda r: (r.get("stopped", False), r.get("time", 0)))
    return first["line"]


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
    return [*argv, "--master_port", str(port), "--module", module, *args], env


def build_command(
    args: Sequence[str], nproc: int, *, module: str = DEFAULT_MODULE, python: str = sys.executable
) -> list[str]:
    """The torchrun command line that runs ``module args`` on ``nproc`` local processes."""
    return command(args, nproc, module=module, python=python, env={})[0]


def describe(nproc: int, argv: Sequence[str], nodes: int = 1) -> str:
    """The launch line the logs show (and the SLURM tests read)."""
    return (
        f"evolcoder.launch: {f'{nodes} nodes x ' if nodes > 1 else ''}{nproc} process(es) (CUDA_VISIBLE_DEVICES="
        f"{os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}): {' '.join(argv)}"
    )


USAGE = "usage: python -m evolcoder.launch [--nproc auto|N] [--module M] [--dry-run] [--] ARGS..."
# the node agent's options (set by multinode_command) besides --nproc and --module
_VALUE_OPTS = ("--nproc", "--module", "--nodes", "--port", "--launcher", "--rdzv-id", "--rdzv-timeout", "--report-dir")


def split_argv(argv: Sequence[str]) -> tuple[dict, list[str]]:
    """Launcher options (leading ones only) and the module's arguments (everything after)."""
    opts: dict = {
        "nproc": "auto",
        "module": DEFAULT_MODULE,
        "dry_run": False,
        "node_agent": False,
        "launcher": "torchrun",
        "rdzv_id": "evolcoder",
        "rdzv_timeout": str(DEFAULT_RDZV_TIMEOUT),
        "report_dir": None,
    }
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            i += 1
            break
        if a in ("-h", "--help"):
            print(USAGE + "\n\n" + (__doc__ or ""))
            raise SystemExit(0)
        if a in ("--dry-run", "--node-agent"):
            opts[a[2:].replace("-", "_")] = True
        elif a.split("=", 1)[0] in _VALUE_OPTS:
            key, eq, val = a.partition("=")
            if not eq:
                if i + 1 >= len(argv):
                    raise SystemExit(f"evolcoder.launch: {key} needs a value\n{USAGE}")
                i += 1
                val = argv[i]
            opts[key[2:].replace("-", "_")] = val
        else:
            break
        i += 1
    return opts, list(argv[i:])


def main(argv: Sequence[str] | None = None) -> None:
    opts, args = split_argv(sys.argv[1:] if argv is None else argv)
    if opts["node_agent"]:
        raise SystemExit(node_agent(opts, args))
    if opts["nproc"] == "auto":
        nproc = process_count()
    elif str(opts["nproc"]).isdigit() and int(opts["nproc"]) >= 1:
        nproc = int(opts["nproc"])
    else:
        raise SystemExit(f"evolcoder.launch: --nproc must be 'auto' or a positive integer, got {opts['nproc']!r}")
    hosts, cpus = slurm_allocation() if not launched() else ([], None)
    if len(hosts) > 1:
        cmd, _ = multinode_command(
            args, nproc, hosts, module=opts["module"], cpus_per_task=cpus, report_dir=opts["report_dir"]
        )
        exe = shutil.which(cmd[0]) or cmd[0]
    else:
        cmd = build_command(args, nproc, module=opts["module"])
        exe = cmd[0]
    print(describe(nproc, cmd, nodes=len(hosts) or 1), file=sys.stderr, flush=True)
    if opts["dry_run"]:
        print(" ".join(cmd))
        return
    sys.stdout.flush()
    os.execv(exe, cmd)


if __name__ == "__main__":
    main()
