"""Every rule's environment provides what its command imports, under every shipped config.

For each config (config.yaml, config/paper.yaml, tests/configs/*.yaml) a dry run gives every job's command
line; tests/rule_imports.py derives from the source the third-party packages that command imports on the
path its settings select (the vLLM backend, DeepSpeed, LoRA, the OpenAI or local evolver, ...). The rule's
conda env file and the hashed lock of its image (read from the workflow as Snakemake loads it under that
config) must each pin every one of them, at one version, inside evolcoder's declared requirement.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from rule_imports import command_imports, parse_shell
from test_containers import _lock_pins, _norm, env_pins

from workflow_utils import REPO, copy_workflow

CONFIGS = [
    None,
    "config/paper.yaml",
    *sorted(p.relative_to(REPO).as_posix() for p in (REPO / "tests/configs").glob("*.yaml")),
]
# overlays of another shipped config (as their headers say)
LAYERED_OVER = {"tests/configs/ablation-tiny.yaml": "tests/configs/tiny.yaml"}

# One Snakemake process per config: a dry run printing every job's command (stderr), then the rules as Snakemake
# loaded them under that config (stdout): {rule: [conda env file, container image]}
DRY_RUN = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import (ConfigSettings, DAGSettings, ExecutionSettings, OutputSettings, ResourceSettings,
    StorageSettings)
with SnakemakeApi(OutputSettings(printshellcmds=True)) as api:
    wf = api.workflow(resource_settings=ResourceSettings(cores=1), storage_settings=StorageSettings(),
        config_settings=ConfigSettings(configfiles=[Path(p) for p in sys.argv[1:]]), snakefile=Path("Snakefile"),
        workdir=Path("."))
    wf.dag(DAGSettings()).execute_workflow(executor="dryrun", execution_settings=ExecutionSettings())
    print(json.dumps({r.name: [r.conda_env, r.container_img] for r in wf._workflow.rules}))
"""


def _import_to_dist() -> dict[str, str]:
    """Import name -> distribution (yaml -> pyyaml), from the installed packages; others map to themselves."""
    out = {}
    for top, dists in metadata.packages_distributions().items():
        out.setdefault(top, _norm(dists[0]))
    return out


def _declared() -> dict[str, list[Requirement]]:
    """evolcoder's requirements (dependencies and every extra), by distribution."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + [r for extra in project["optional-dependencies"].values() for r in extra]
    out: dict[str, list[Requirement]] = {}
    for r in reqs:
        req = Requirement(r)
        out.setdefault(_norm(req.name), []).append(req)
    return out


def jobs_of(dry_run: str) -> list[tuple[str, str]]:
    """(rule, shell command) of every job a dry run (-p) prints."""
    out, rule = [], None
    for line in dry_run.splitlines():
        m = re.match(r"^(?:local)?(?:rule|checkpoint) (\w+):$", line.strip())
        if m:
            rule = m.group(1)
        elif line.startswith("Shell command: ") and rule and line.strip() != "Shell command: None":
            out.append((rule, line[len("Shell command: ") :]))
    return out


def check_config(wd: Path, configs: tuple[str, ...]) -> list[str]:
    """Problems (one line each) of the workflow in ``wd`` under ``configs``."""
    cfgs = list(configs)
    proc = subprocess.run([sys.executable, "-c", DRY_RUN, *cfgs], cwd=wd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = jobs_of(proc.stderr)
    assert jobs, proc.stderr[-2000:]
    rules = json.loads(proc.stdout.splitlines()[-1])
    images = {}
    for path in cfgs:
        images.update((yaml.safe_load((wd / path).read_text()) or {}).get("containers", {}))
    base = yaml.safe_load((wd / "config.yaml").read_text())["containers"]
    families = {ref: fam for fam, ref in {**base, **images}.items()}
    dist_of, declared = _import_to_dist(), _declared()
    needed: dict[tuple[str, str], dict[str, set[str]]] = {}
    for rule, shell in jobs:
        parsed = parse_shell(shell)
        assert parsed, f"rule {rule}: not an evolcoder command: {shell[:80]}"
        cmd, settings, options = parsed
        for pkg, where in command_imports(cmd, settings, options).items():
            needed.setdefault((rule, cmd), {}).setdefault(pkg, set()).update(where)
    problems = []
    for (rule, cmd), pkgs in sorted(needed.items()):
        env_file, image = rules[rule]
        assert env_file and image, f"rule {rule}: no conda env or container"
        env_name = Path(env_file).name
        family = families.get(image)
        assert family, f"rule {rule}: image {image} is not a family of containers:"
        env, lock = env_pins(env_name), _lock_pins(family)
        for pkg, where in sorted(pkgs.items()):
            dist = dist_of.get(pkg, _norm(pkg))
            at = sorted(where)[0]
            for name, pins in ((f"envs/{env_name}", env), (f"envs/lock/{family}.txt", lock)):
                if dist not in pins:
                    problems.append(
                        f"rule {rule} (evolcoder {cmd}) imports {pkg} ({at}) but {name} does not provide {dist}"
                    )
                    continue
                version = pins[dist].split("+")[0]
                for req in declared.get(dist, []):
                    if not req.specifier.contains(version, prereleases=True):
                        problems.append(f"rule {rule}: {name} pins {dist}=={version}, evolcoder requires {req}")
            if dist in env and dist in lock and env[dist].split("+")[0] != lock[dist].split("+")[0]:
                problems.append(
                    f"rule {rule}: envs/{env_name} pins {dist}=={env[dist]}, envs/lock/{family}.txt {lock[dist]}"
                )
    return problems


@pytest.fixture(scope="module")
def workflow_copy(tmp_path_factory):
    wd = copy_workflow(tmp_path_factory.mktemp("wf"), None)
    # stand-in for the released predictions file the paper config lists under ../shared
    (wd / "released.jsonl").write_text("")
    (wd / "ext.yaml").write_text(
        "evaluation:\n  external_predictions:\n    - {name: released, benchmark: humaneval, path: released.jsonl}\n"
    )
    return wd


@pytest.mark.parametrize("configfile", CONFIGS, ids=[c or "config.yaml" for c in CONFIGS])
def test_every_rule_environment_provides_what_its_command_imports(workflow_copy, configfile):
    configs = (*filter(None, [LAYERED_OVER.get(configfile), configfile]), "ext.yaml")
    problems = check_config(workflow_copy, configs)
    assert not problems, f"{configfile or 'config.yaml'}: " + "; ".join(problems)


def test_the_derivation_follows_the_config(workflow_copy):
    """The vLLM backend's import counts where the config selects vLLM, DeepSpeed's and peft's where training
    uses them, the OpenAI client's where the evolver is an API."""
    hf = command_imports("generate", {"backend": "hf"})
    vllm = command_imports("generate", {"backend": "vllm"})
    assert "vllm" in vllm and "vllm" not in hf and "torch" in hf
    plain = command_imports("train", {"deepspeed": None, "lora": None})
    zero3_lora = command_imports("train", {"deepspeed": "zero3", "lora": {"r": 8}})
    assert {"deepspeed", "peft"} <= set(zero3_lora) and not {"deepspeed", "peft"} & set(plain)
    assert "matplotlib" not in plain  # the loss plot inside `train` is in a try that never fails training
    assert "openai" in command_imports("evolve", {"backend": {"kind": "openai"}})
    assert "openai" not in command_imports("evolve", {"backend": {"kind": "local"}})
    assert "datasets" in command_imports("seed", {}, {"source": "hf:x/y"})
    assert "datasets" not in command_imports("seed", {}, {"source": "builtin"})
