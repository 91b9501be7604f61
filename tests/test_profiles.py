"""Profiles without a cluster: `--profile slurm` (installed by the one-liner) and `--profile
profiles/slurm` both resolve and combine with the workflow profile; per-rule resources come out
as intended (dry runs, seconds)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from workflow_utils import REPO, copy_workflow

INSTALL = REPO / "scripts/install_slurm_profile.sh"


def _env(xdg: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["XDG_CONFIG_HOME"] = str(xdg)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def _dry_run(
    wd: Path, env: dict[str, str], *args: str, configfiles: tuple[str, ...] = ("tests/configs/tiny.yaml",)
) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--configfile", *configfiles, *args],
        cwd=wd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _resources(out: str) -> dict[str, dict[str, str]]:
    """{rule: {resource: value}} from a dry run's job listing."""
    res: dict[str, dict[str, str]] = {}
    rule = None
    for line in out.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):", line)
        if m:
            rule = m.group(1)
        m = re.match(r"^\s+resources: (.*)$", line)
        if m and rule:
            res[rule] = dict(kv.split("=", 1) for kv in m.group(1).split(", ") if "=" in kv)
    return res


@pytest.fixture(scope="module")
def wd(tmp_path_factory) -> Path:
    return copy_workflow(tmp_path_factory.mktemp("profiles"), None)


def test_installer_puts_the_template_where_a_bare_name_is_found_and_keeps_an_existing_one(tmp_path):
    env = _env(tmp_path / "xdg")
    dest = tmp_path / "xdg/snakemake/slurm"
    subprocess.run(["bash", str(INSTALL)], env=env, check=True, capture_output=True)
    assert (dest / "config.yaml").read_text() == (REPO / "profiles/slurm/config.yaml").read_text()
    assert (dest / "partitions.yaml").exists()
    # a site profile already there is kept...
    (dest / "config.yaml").write_text("executor: slurm\n# site\n")
    proc = subprocess.run(["bash", str(INSTALL)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0 and "kept it" in proc.stderr
    assert (dest / "config.yaml").read_text() == "executor: slurm\n# site\n"
    # ...unless --force, which keeps a backup
    subprocess.run(["bash", str(INSTALL), "--force"], env=env, check=True, capture_output=True)
    assert (dest / "config.yaml").read_text() == (REPO / "profiles/slurm/config.yaml").read_text()
    backups = list(dest.parent.glob("slurm.bak.*"))
    assert len(backups) == 1 and (backups[0] / "config.yaml").read_text() == "executor: slurm\n# site\n"


@pytest.mark.parametrize("spelling", ["slurm", "profiles/slurm"])
def test_both_spellings_combine_the_slurm_and_workflow_profiles(wd, tmp_path, spelling):
    env = _env(tmp_path / "xdg")
    if spelling == "slurm":
        subprocess.run(["bash", str(INSTALL)], env=env, check=True, capture_output=True)
    out = _dry_run(wd, env, "--profile", spelling)
    assert f"Using profiles {spelling} and workflow specific profile profiles/default" in out, out[:1500]
    res = _resources(out)
    # site defaults of the global profile survive (the workflow profile sets no default-resources)
    assert res["table"]["runtime"] == "60" and res["table"]["mem_mb"] == "4000", res["table"]
    # per-rule needs of the workflow profile
    assert res["score"]["mem_mb"] == "4000" and res["score"]["runtime"] == "120", res["score"]
    assert res["evolve_round"]["runtime"] == "720", res["evolve_round"]
    # GPU rules: sized from the config
    for rule in ("train", "generate"):
        assert int(res[rule]["gpu"]) >= 1 and "cpus_per_gpu" in res[rule], res[rule]
    for rule in ("seed", "evolve_round", "merge", "tokenize", "gather", "score"):
        assert "gpu" not in res[rule], (rule, res[rule])


def test_gpu_sizing_follows_the_config(wd, tmp_path):
    (wd / "big.yaml").write_text(
        "train:\n  resources: {gpus: 8, gpu_model: a100, cpus_per_gpu: 8, mem_mb: 480000, runtime: 2880}\n"
    )
    out = _dry_run(wd, _env(tmp_path / "xdg"), configfiles=("tests/configs/tiny.yaml", "big.yaml"))
    res = _resources(out)
    assert res["train"]["gpu"] == "8" and res["train"]["gpu_model"] == "a100", res["train"]
    assert res["train"]["mem_mb"] == "480000" and res["train"]["runtime"] == "2880", res["train"]
    assert res["generate"]["gpu"] == "1", res["generate"]


def test_workflow_profile_leaves_site_keys_to_the_global_profile():
    wf = yaml.safe_load((REPO / "profiles/default/config.yaml").read_text())
    site = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    # a key in both would silently replace the site's value as a whole
    for key in ("executor", "default-resources", "jobs", "latency-wait", "retries"):
        assert key not in wf, key
    assert site["executor"] == "slurm"
    assert (REPO / "profiles/slurm" / site["slurm-partition-config"]).exists()
    parts = yaml.safe_load((REPO / "profiles/slurm/partitions.yaml").read_text())["partitions"]
    assert any(p.get("max_gpu", 0) > 0 for p in parts.values()) and any(
        p.get("max_gpu", 0) == 0 for p in parts.values()
    )
    rules = {r for r in wf.get("set-resources", {})} | set(wf.get("set-threads", {}))
    for rule in ("train", "generate"):
        assert rule not in wf.get("set-resources", {}), f"{rule}: its GPU sizing comes from the config"
    assert rules, "the workflow profile sizes no rule"
