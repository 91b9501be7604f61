"""Run the real workflow in a throw-away copy of the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_PARTS = ("Snakefile", "rules", "config.yaml", "config", "profiles", "report", "envs", "src", "tests/configs")


def copy_workflow(dest: Path, shared_data: Path | None) -> Path:
    """Copy what Snakemake reads into ``dest``; data paths point at ``shared_data``."""
    for part in WORKFLOW_PARTS:
        src = REPO / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif src.exists():
            (dest / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / part)
    if shared_data is not None:
        overlay = {
            "data": {
                "humaneval_plus": str(shared_data / "evalplus" / "HumanEvalPlus-v0.1.10.jsonl.gz"),
                "mbpp_plus": str(shared_data / "evalplus" / "MbppPlus-v0.2.0.jsonl.gz"),
                "mbpp_original": str(shared_data / "mbpp" / "mbpp.test.jsonl"),
                "mbpp_plus_prompts": str(shared_data / "mbpp" / "wizardcoder_mbppplus_prompts.json"),
                "ds1000": str(shared_data / "ds1000" / "ds1000.jsonl.gz"),
            }
        }
        (dest / "data.yaml").write_text(yaml.safe_dump(overlay))
    return dest


def snakemake(
    workdir: Path,
    *args: str,
    configfiles: tuple[str, ...] = ("tests/configs/tiny.yaml",),
    check: bool = True,
    timeout: int = 1800,
    env: dict | None = None,
    bin_dir: Path | None = None,
) -> subprocess.CompletedProcess:
    """``bin_dir``: a folder searched first for the rules' commands (a stand-in ``evolcoder``)."""
    cfgs = list(configfiles)
    if (workdir / "data.yaml").exists():
        cfgs.append("data.yaml")
    # the caller's arguments first: --configfile takes several values and would swallow a target
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args, *(["--configfile", *cfgs] if cfgs else [])]
    env = dict(os.environ, **(env or {}))
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    if bin_dir is not None:
        env["PATH"] = str(bin_dir) + os.pathsep + env["PATH"]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def planned_jobs(workdir: Path, *args: str, **kw) -> dict[str, int]:
    """Jobs a dry run would execute, from Snakemake's job-stats table: {rule: count}."""
    # targets before --quiet, which takes several values
    proc = snakemake(workdir, *args, "-n", "--quiet", "rules", **kw)
    jobs: dict[str, int] = {}
    text = proc.stdout + proc.stderr
    if "Nothing to be done" in text:
        return jobs
    in_table = False
    for line in text.splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            in_table = True
            continue
        if in_table:
            if len(parts) == 2 and parts[1].isdigit():
                if parts[0] == "total":
                    break
                jobs[parts[0]] = int(parts[1])
            elif parts and not set(parts[0]) <= {"-"}:
                break
    return jobs
