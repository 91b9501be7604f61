"""Container recipe and locks: one Containerfile, hashed locks that agree with envs/constraints.txt and the
env files, bases pinned, and every rule names a container. Nothing is built here: tests/test_container_images.py
builds and runs the images (opt-in, EVOLCODER_CONTAINERS=1)."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CONTAINERS = REPO / "containers"
ENVS = REPO / "envs"
FAMILIES = ("cpu", "gpu", "sandbox", "vllm")
# env files installed by each family's image
FAMILY_ENVS = {
    "cpu": ["cpu.yaml"],
    "gpu": ["gpu.yaml"],
    "sandbox": ["sandbox.yaml", "ds1000.yaml"],
    "vllm": ["vllm.yaml"],
}
# families resolved on their own (their library pins below the development venv's): not held to envs/constraints.txt
OWN_RESOLUTION = ("vllm",)
# env files pinned to the development venv (the others pin what their library needs)
VENV_PINNED = ("cpu.yaml", "gpu.yaml", "sandbox.yaml")

INSTRUCTIONS = {
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
    "MAINTAINER",
}
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)$")


def parse_dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, backslash continuations joined.

    Raises AssertionError on anything that is not a Dockerfile instruction.
    """
    out: list[tuple[str, str]] = []
    buf = ""
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, args = buf.strip().partition(" ")
        assert word.upper() in INSTRUCTIONS and word == word.upper(), f"{path}:{lineno}: not an instruction: {word}"
        assert args.strip() or word in {"CMD", "ENTRYPOINT"}, f"{path}:{lineno}: {word} without arguments"
        out.append((word, args.strip()))
        buf = ""
    assert not buf, f"{path}: dangling line continuation"
    return out


def env_pins(name: str) -> dict[str, str]:
    """{normalised package: version} of an env file's pip section (and python)."""
    spec = yaml.safe_load((ENVS / name).read_text())
    assert isinstance(spec, dict) and spec.get("name") and spec.get("dependencies"), name
    pins: dict[str, str] = {}
    for dep in spec["dependencies"]:
        if isinstance(dep, dict):
            for req in dep.get("pip", []):
                if req.startswith("-"):
                    continue
                m = PIN.match(req)
                assert m, f"{name}: pip requirement not pinned exactly: {req}"
                pins[_norm(m.group(1))] = m.group(2)
        else:
            assert re.match(r"^[A-Za-z0-9_.\-]+=[0-9][^=]*$", dep), f"{name}: conda dependency not pinned: {dep}"
            pkg, ver = dep.split("=", 1)
            pins[_norm(pkg)] = ver
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


RECIPE = CONTAINERS / "Containerfile"
LOCKS = ENVS / "lock"


def _lock_pins(family: str) -> dict[str, str]:
    """{normalised package: version} of envs/lock/<family>.txt; every requirement carries a hash."""
    text = (LOCKS / f"{family}.txt").read_text()
    reqs = [r for r in re.split(r"(?m)^(?=[A-Za-z0-9])", text) if r.strip() and not r.startswith("#")]
    pins = {}
    for req in reqs:
        m = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", req)
        assert m, f"envs/lock/{family}.txt: not an exact pin: {req.splitlines()[0]}"
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", req), f"envs/lock/{family}.txt: {m.group(1)} has no hash"
        pins[_norm(m.group(1))] = m.group(2)
    return pins


def test_one_recipe_for_every_image_and_bases_pinned_by_digest():
    steps = parse_dockerfile(RECIPE)
    froms = [args.split()[0] for word, args in steps if word == "FROM"]
    assert froms == ["${BASE}"], froms  # the build script names the base; no registry image is assumed
    build = (REPO / "scripts" / "build_containers.sh").read_text()
    gpu_base = re.search(r"GPU_BASE=\$\{EVOLCODER_GPU_BASE:-(\S+)\}", build)
    assert gpu_base and DIGEST.search(gpu_base.group(1)), "the GPU base (CUDA) must be pinned by digest"
    assert "mmdebstrap" in build, "the CPU base must be buildable without a registry"


def test_official_dockerfile_parser_accepts_the_recipe():
    dockerfile_mod = pytest.importorskip("dockerfile", reason="pip package `dockerfile` (Go parser) not installed")
    cmds = dockerfile_mod.parse_file(str(RECIPE))
    assert [c.cmd.upper() for c in cmds] == [w for w, _ in parse_dockerfile(RECIPE)]


def test_recipe_installs_exactly_the_hashed_lock():
    steps = parse_dockerfile(RECIPE)
    copied = " ".join(args for word, args in steps if word == "COPY")
    runs = " ".join(args for word, args in steps if word == "RUN")
    assert "envs/lock/" in copied and "containers/install.sh" in copied
    assert "install.sh" in runs and "pip install" not in runs, "installs go through containers/install.sh only"
    install = (CONTAINERS / "install.sh").read_text()
    pip_lines = [line for line in install.splitlines() if "pip install" in line and not line.lstrip().startswith("#")]
    assert len(pip_lines) == 2, pip_lines
    assert "--require-hashes" in pip_lines[0] and "--no-deps" in pip_lines[0] and '-r "$lock"' in pip_lines[0]
    assert "--no-deps" in pip_lines[1] and "--no-index" in pip_lines[1] and "/opt/evolcoder" in pip_lines[1]
    env = " ".join(args for word, args in steps if word == "ENV")
    assert "PATH=/opt/venv/bin:" in env, "the venv must be on PATH for `apptainer exec`"
    assert "EVOLCODER_CONTAINER=" in env and "EVOLCODER_IMAGE_FAMILY=" in env, "manifests record the image"


@pytest.mark.parametrize("family", FAMILIES)
def test_locks_are_hashed_and_agree_with_the_constraints_and_env_files(family):
    pins = _lock_pins(family)
    constraints = {}
    for line in (ENVS / "constraints.txt").read_text().splitlines():
        m = PIN.match(line.strip())
        if m:
            constraints[_norm(m.group(1))] = m.group(2)
    differ = {k: (v, constraints[k]) for k, v in pins.items() if k in constraints and constraints[k] != v.split("+")[0]}
    if family in OWN_RESOLUTION:
        differ = {}
    assert not differ, f"envs/lock/{family}.txt vs envs/constraints.txt: {differ}"
    top = [
        _norm(PIN.match(line).group(1)) for line in (LOCKS / f"{family}.in").read_text().splitlines() if PIN.match(line)
    ]
    env = env_pins(f"{family}.yaml")
    for pkg in top:
        assert pkg in pins, f"envs/lock/{family}.in: {pkg} not in the lock"
        if pkg in env:
            assert env[pkg].split("+")[0] == pins[pkg].split("+")[0], (family, pkg, env[pkg], pins[pkg])
    assert pins["torch"].endswith("+cpu") == (family == "cpu") if "torch" in pins else family != "gpu"


@pytest.mark.parametrize("family", FAMILIES)
def test_env_files_are_fully_pinned(family):
    for env in FAMILY_ENVS[family]:
        if not (ENVS / env).exists():
            if env == "ds1000.yaml":
                pytest.skip("envs/ds1000.yaml (DS-1000 library pins) is not in this checkout yet")
            pytest.fail(f"envs/{env} missing")
        assert env_pins(env), env


@pytest.mark.parametrize("env", VENV_PINNED)
def test_env_pins_equal_the_development_venv(env):
    """Same versions as the venv the tests run in (torch: same release, CPU vs CUDA build)."""
    mismatches = {}
    for pkg, want in env_pins(env).items():
        if pkg in {"python", "pip"}:
            continue
        try:
            have = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue  # not installed here (e.g. vllm): nothing to compare with
        if have.split("+")[0] != want.split("+")[0]:
            mismatches[pkg] = (want, have)
    assert not mismatches, f"envs/{env} pins differ from the installed versions (want, have): {mismatches}"


@pytest.mark.parametrize("env", VENV_PINNED)
def test_env_pins_equal_the_constraints_lock(env):
    """Same versions as envs/constraints.txt, the lock scripts/setup.sh installs the test venv from."""
    lock_file = ENVS / "constraints.txt"
    if not lock_file.exists():
        pytest.skip("envs/constraints.txt not in this checkout")
    lock = {}
    for line in lock_file.read_text().splitlines():
        m = PIN.match(line.strip())
        if m:
            lock[_norm(m.group(1))] = m.group(2).split("+")[0]
    mismatches = {
        pkg: (ver, lock[pkg]) for pkg, ver in env_pins(env).items() if pkg in lock and lock[pkg] != ver.split("+")[0]
    }
    assert not mismatches, f"envs/{env} vs envs/constraints.txt (env, lock): {mismatches}"
    missing = sorted(set(env_pins(env)) - set(lock) - {"python", "pip"})
    assert not missing, f"envs/{env} pins packages the lock does not know: {missing}"


def test_shared_packages_agree_across_env_files():
    """A package pinned in several of the venv-pinned env files has one version everywhere."""
    seen: dict[str, tuple[str, str]] = {}
    for env in VENV_PINNED:
        for pkg, ver in env_pins(env).items():
            ver = ver.split("+")[0]
            if pkg in seen:
                assert seen[pkg][1] == ver, f"{pkg}: {seen[pkg][0]} pins {seen[pkg][1]}, {env} pins {ver}"
            seen[pkg] = (env, ver)


def _rules(text: str) -> dict[str, str]:
    """{rule name: body} of a Snakemake file."""
    out = {}
    parts = re.split(r"^(?:rule|checkpoint)\s+(\w+)\s*:\s*$", text, flags=re.M)
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        out[name] = body.split("\n\n\n")[0]
    return out


def test_every_rule_names_its_container_through_config():
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    families = cfg["containers"]
    assert set(FAMILIES) <= set(families), families
    for fam in FAMILIES:
        assert re.match(r"^(docker|oras|library|shub)://\S+$", families[fam]), families[fam]
    rule_files = [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]
    checked = 0
    for f in rule_files:
        for name, body in _rules(f.read_text()).items():
            if not re.search(r"^\s+(shell|run|script|wrapper|notebook):", body, flags=re.M):
                continue  # a target rule (all, ablation_rounds): no command, nothing to contain
            m = re.search(r"^\s+container:\s*\n\s+(.+)$", body, flags=re.M)
            assert m, f"{f.name}: rule {name} has no container"
            ref = m.group(1).strip()
            # gpu or vllm by evaluation.backend (test_rule_envs.py)
            if ref == "container_for(plan.generation_family())":
                checked += 1
                continue
            fam = re.search(r"""container_for\(\s*["'](\w+)["']\s*\)|config\["containers"\]\["(\w+)"\]""", ref)
            assert fam, f"{f.name}: rule {name} container not taken from config: {ref}"
            assert (fam.group(1) or fam.group(2)) in FAMILIES, f"{f.name}: rule {name}: unknown family {ref}"
            checked += 1
    assert checked >= 8, f"only {checked} rules found"


def test_gpu_rules_use_the_gpu_image_and_scoring_the_sandbox():
    text = "\n".join(p.read_text() for p in sorted((REPO / "rules").glob("*.smk")))
    rules = _rules(text)
    for name, family in {
        "train": "gpu",
        "generate": "plan.generation_family()",
        "score": "sandbox",
        "table": "cpu",
    }.items():
        assert name in rules, name
        family = family if family.endswith(")") else f'"{family}"'
        assert f"container_for({family})" in rules[name] or f'config["containers"][{family}]' in rules[name], (
            name,
            family,
        )


def test_ds1000_env_files_carry_the_official_pins():
    """envs/ds1000.yaml (conda, the sandbox image) and envs/ds1000.txt (the lock setup_ds1000.sh
    installs) pin the same versions, and those are the scorer's OFFICIAL_PINS."""
    from evolcoder.benchmarks.ds1000 import OFFICIAL_PINS

    lock = {}
    for line in (ENVS / "ds1000.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            m = PIN.match(line.strip())
            assert m, f"envs/ds1000.txt: not an exact pin: {line}"
            lock[_norm(m.group(1))] = m.group(2)
    conda = env_pins("ds1000.yaml")
    for pkg, ver in conda.items():
        if pkg in {"python", "pip"}:
            continue
        assert lock.get(pkg) == ver.split("+")[0], f"{pkg}: ds1000.yaml {ver}, ds1000.txt {lock.get(pkg)}"
    dist = {"sklearn": "scikit-learn", "tensorflow": "tensorflow-cpu"}
    for mod, want in OFFICIAL_PINS.items():
        have = lock.get(dist.get(mod, mod))
        assert have and (want is None or have == want), f"{mod}: official {want}, envs/ds1000.txt {have}"
    assert conda["python"].startswith("3.11")  # pandas 1.5.3: no wheels past 3.11


def test_every_path_an_env_file_names_exists():
    for env in sorted((REPO / "envs").glob("*.yaml")):
        comments = "\n".join(line for line in env.read_text().splitlines() if line.startswith("#"))
        for path in re.findall(r"\b((?:envs|containers|scripts|docs)/[\w./-]*\w)", comments):
            assert (REPO / path).exists(), f"{env.name} names {path}"
