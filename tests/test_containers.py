"""Container recipes: they parse, pin their bases by digest, install exactly the env files, and
every rule names a container. No container engine runs here, so nothing is built."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CONTAINERS = REPO / "containers"
ENVS = REPO / "envs"
FAMILIES = ("cpu", "gpu", "sandbox")
# env files installed by each family's image
FAMILY_ENVS = {"cpu": ["cpu.yaml"], "gpu": ["gpu.yaml", "vllm.yaml"], "sandbox": ["sandbox.yaml", "ds1000.yaml"]}
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


def dockerfile(family: str) -> Path:
    return CONTAINERS / family / "Dockerfile"


@pytest.mark.parametrize("family", FAMILIES)
def test_recipe_parses_and_pins_every_base_by_digest(family):
    steps = parse_dockerfile(dockerfile(family))
    froms = [args.split()[0] for word, args in steps if word == "FROM"]
    assert froms, "no FROM"
    for image in froms:
        assert DIGEST.search(image), f"{family}: base image not pinned by digest: {image}"
    # images pulled by COPY --from=<image> are pinned too (stage names are fine)
    stages = {args.split()[-1] for word, args in steps if word == "FROM" and " AS " in f" {args.upper()} "}
    for word, args in steps:
        m = re.search(r"--from=(\S+)", args) if word == "COPY" else None
        if m and m.group(1) not in stages:
            assert DIGEST.search(m.group(1)), f"{family}: COPY --from image not pinned: {m.group(1)}"


def test_official_dockerfile_parser_accepts_the_recipes():
    dockerfile_mod = pytest.importorskip("dockerfile", reason="pip package `dockerfile` (Go parser) not installed")
    for family in FAMILIES:
        cmds = dockerfile_mod.parse_file(str(dockerfile(family)))
        assert [c.cmd.upper() for c in cmds] == [w for w, _ in parse_dockerfile(dockerfile(family))], family


@pytest.mark.parametrize("family", FAMILIES)
def test_recipe_installs_exactly_its_env_files(family):
    steps = parse_dockerfile(dockerfile(family))
    copied = " ".join(args for word, args in steps if word == "COPY")
    runs = " ".join(args for word, args in steps if word == "RUN")
    for env in FAMILY_ENVS[family]:
        assert f"envs/{env}" in copied, f"{family}: envs/{env} not copied into the image"
        assert re.search(rf"micromamba (install|create) -y -n \w+ -f /tmp/envs/{re.escape(env)}", runs), (
            f"{family}: envs/{env} not installed"
        )
    # no package is installed outside the env files, except evolcoder itself (--no-deps)
    for m in re.finditer(r"pip install ([^&;]+)", runs):
        args = m.group(1).split()
        assert "--no-deps" in args and "/opt/evolcoder" in args, f"{family}: unpinned pip install: {m.group(0)}"
    env = " ".join(args for word, args in steps if word == "ENV")
    assert "PATH=/opt/conda/bin:" in env, f"{family}: the env must be on PATH for `apptainer exec`"
    assert "EVOLCODER_CONTAINER=" in env, f"{family}: stage manifests record the image via EVOLCODER_CONTAINER"


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
    for name, body in zip(parts[1::2], parts[2::2]):
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
            if name == "all":
                continue  # target rule: no command
            m = re.search(r"^\s+container:\s*\n\s+(.+)$", body, flags=re.M)
            assert m, f"{f.name}: rule {name} has no container"
            ref = m.group(1).strip()
            fam = re.search(r"""container_for\(\s*["'](\w+)["']\s*\)|config\["containers"\]\["(\w+)"\]""", ref)
            assert fam, f"{f.name}: rule {name} container not taken from config: {ref}"
            assert (fam.group(1) or fam.group(2)) in FAMILIES, f"{f.name}: rule {name}: unknown family {ref}"
            checked += 1
    assert checked >= 8, f"only {checked} rules found"


def test_gpu_rules_use_the_gpu_image_and_scoring_the_sandbox():
    text = "\n".join(p.read_text() for p in sorted((REPO / "rules").glob("*.smk")))
    rules = _rules(text)
    for name, family in {"train": "gpu", "generate": "gpu", "score": "sandbox", "table": "cpu"}.items():
        assert name in rules, name
        assert f'container_for("{family}")' in rules[name] or f'config["containers"]["{family}"]' in rules[name], (
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
