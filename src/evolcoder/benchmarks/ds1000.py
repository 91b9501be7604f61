"""DS-1000 (2024 format: prompt, reference_code, code_context, metadata), official checks.

Each solution runs as the official harness builds the program: ``code_context`` +
``code = <solution>`` + ``test_execution(code)`` (+ ``test_string(code)`` where the context defines
it), in a sandboxed child forked from a worker that has pre-imported the heavy libraries.

The workers run under the interpreter of DS-1000's own environment (the official library pins,
``envs/ds1000.txt``; the option ``python``, ``evaluation.benchmark_options.ds1000.python``, or
``$EVOLCODER_DS1000_PYTHON``), not the scorer's: see
:mod:`evolcoder.sandbox.pool`. The score file records that environment's versions and whether they
match the official pins. Problems of a library that cannot be imported there (TensorFlow is
optional) are reported as skipped, never as passed; failures with an environmental cause (a
network fetch in the network-less sandbox, a missing module, a timeout) are listed as such.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from typing import ClassVar

from evolcoder.benchmarks import harness
from evolcoder.benchmarks.base import Benchmark, Dataset, JobContext, Prepared, Sample, dataset_path
from evolcoder.benchmarks.verdicts import ScoreSettings, limits_for, time_limit_policy
from evolcoder.errors import DataError, EvolcoderError
from evolcoder.io import read_jsonl
from evolcoder.passk import pass_at_k_table
from evolcoder.sandbox.jobs import Job
from evolcoder.sandbox.probe import child_env, describe_interpreter, same_interpreter

log = logging.getLogger(__name__)

LIBRARY_MODULE = {
    "Pandas": "pandas",
    "Numpy": "numpy",
    "Matplotlib": "matplotlib",
    "Sklearn": "sklearn",
    "Scipy": "scipy",
    "Pytorch": "torch",
    "Tensorflow": "tensorflow",
}

# The official DS-1000 (2024) execution environment, by module (None: any version; torch: a CPU
# build). envs/ds1000.txt installs exactly these (tests/test_containers.py checks it).
OFFICIAL_PINS: dict[str, str | None] = {
    "numpy": "1.26.4",
    "pandas": "1.5.3",
    "scipy": "1.12.0",
    "sklearn": "1.4.0",
    "matplotlib": "3.8.4",
    "seaborn": "0.13.2",
    "statsmodels": "0.14.1",
    "xgboost": "2.0.3",
    "gensim": "4.3.2",
    "tensorflow": "2.16.1",
    "torch": None,
}
PYTHON_ENV_VAR = "EVOLCODER_DS1000_PYTHON"

_NETWORK = (
    "URLError",
    "name resolution",
    "ConnectionError",
    "gaierror",
    "Network is unreachable",
    "HTTPError",
    "ConnectionRefusedError",
    "RemoteDisconnected",
)
_MISSING = re.compile(r"ModuleNotFoundError: No module named '([^']+)'")


def failure_cause(reason: str) -> str | None:
    """The environmental cause of a failure, if it has one: network, missing-module:<name>, timeout."""
    if any(k in reason for k in _NETWORK):
        return "network"
    m = _MISSING.search(reason)
    if m:
        return f"missing-module:{m.group(1).split('.')[0]}"
    if reason.startswith(("time limit", "wall-clock", "killed by signal", "CPU budget", "no progress")):
        return "timeout"
    return None


def probe_interpreter(python: str) -> dict:
    """``python`` and the versions of DS-1000's libraries there, without importing them."""
    if same_interpreter(python):
        return describe_interpreter(list(OFFICIAL_PINS), imported=False)
    code = (
        "import json; from evolcoder.sandbox.probe import describe_interpreter; "
        f"print(json.dumps(describe_interpreter({list(OFFICIAL_PINS)!r}, imported=False)))"
    )
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, env=child_env(), timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EvolcoderError(f"ds1000: execution interpreter {python} cannot run: {exc}") from None
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["?"])[-1]
        raise EvolcoderError(f"ds1000: execution interpreter {python} failed: {tail}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def pin_mismatches(versions: dict[str, str | None]) -> dict[str, dict]:
    """Modules whose version differs from the official pins: {module: {want, have}}."""
    out = {}
    for mod, want in OFFICIAL_PINS.items():
        have = versions.get(mod)
        base = have.split("+")[0] if have else None
        if have is None or (want is not None and base != want):
            out[mod] = {"want": want or "any", "have": have}
    return out


@functools.lru_cache(maxsize=4)
def _read(path: str) -> tuple[dict, ...]:
    rows = read_jsonl(path)
    for i, r in enumerate(rows):
        if "code_context" not in r or "prompt" not in r:
            raise DataError(f"{path}: row {i} is not DS-1000 (2024 format: prompt, code_context, ...)")
        meta = r.get("metadata") or {}
        if isinstance(meta, str):  # some exports keep it as a Python literal
            import ast

            try:
                meta = ast.literal_eval(meta)
            except (ValueError, SyntaxError):
                meta = {}
        r["task_id"] = str(meta.get("problem_id", i))
        r["library"] = meta.get("library", "")
    return tuple(rows)


def ds1000_postprocess(code: str) -> str:
    """The official DS-1000 post-processing of a completion."""
    code = code.split("</code>")[0]
    code = code.replace("```python", "")
    code = code.split("```")[0]
    code = code.split("\nEND SOLUTION")[0]
    code = code.replace("<code>", "")
    return code


class DS1000(Benchmark):
    name = "ds1000"
    labels: ClassVar[dict[str, str]] = {"base": "DS-1000"}
    data_key = "ds1000"
    decontamination_fields = ("prompt", "reference_code")
    stop_sequences = ("</code>", "# SOLUTION END", "\nEND SOLUTION", "\n### Instruction")
    completion_keys = ("completion", "code")
    options: ClassVar[dict[str, dict]] = {
        "python": {
            "type": ["string", "null"],
            "default": None,
            "description": "Interpreter of DS-1000's execution environment (the official library pins, "
            "envs/ds1000.txt; bash scripts/setup_ds1000.sh builds it). null = $EVOLCODER_DS1000_PYTHON (set in "
            "the sandbox container), else the scorer's own, with a warning; the score file records the versions "
            "used.",
        },
        "timeout_s": {
            "type": "number",
            "exclusiveMinimum": 0,
            "default": 120,
            "description": "Per-program wall-clock limit (as the official harness).",
        },
        "preimport": {
            "type": "array",
            "items": {"type": "string"},
            "default": [
                "numpy",
                "pandas",
                "scipy",
                "scipy.stats",
                "sklearn",
                "matplotlib",
                "matplotlib.pyplot",
                "seaborn",
                "torch",
                "tensorflow",
            ],
            "description": "Libraries imported once per worker (each forked program finds them loaded); "
            "missing ones are skipped.",
        },
    }

    def load(self, data_path: str | None) -> Dataset:
        path = dataset_path(self.name, self.data_key, data_path)
        tasks = [dict(r) for r in _read(path)]
        return Dataset(tasks, path, f"2024-{len(tasks)}")

    def program(self, task: dict, text: str, source: str) -> str:
        """DS-1000's own post-processing, whatever the method (no WizardCoder script, no evalplus task);
        an answer in a code block (instruct models) is taken from the block."""
        if source not in ("solution", "completion"):
            text = text.replace("\r", "")
            if "```" in text:
                after = text.split("```", 1)[1]
                text = after[after.index("\n") + 1 :] if "\n" in after else after
        return ds1000_postprocess(text)

    # --- scoring ---------------------------------------------------------------------------
    def prepare(
        self, samples: list[Sample], tasks: list[dict], data_path: str | None, settings: ScoreSettings
    ) -> Prepared:
        """Probe the execution environment: problems whose library it lacks are skipped, libraries it
        lacks are not pre-imported, and the versions are checked against the official pins."""
        by_id = {t["task_id"]: t for t in tasks}
        python = execution_python(settings.options["python"])
        env = probe_interpreter(python)
        versions = env["versions"]
        libs = {lib for lib, mod in LIBRARY_MODULE.items() if versions.get(mod)}
        mismatches = pin_mismatches(versions)
        if mismatches:
            log.warning(
                "ds1000: the execution environment (%s) differs from the official pins: %s; "
                "verdicts may differ from the official harness (bash scripts/setup_ds1000.sh, "
                "then $%s)",
                python,
                ", ".join(f"{m} {d['have']} (pin {d['want']})" for m, d in mismatches.items()),
                PYTHON_ENV_VAR,
            )
        keep = [s for s in samples if by_id[s.task_id]["library"] in libs]
        skipped = sorted({s.task_id for s in samples} - {s.task_id for s in keep}, key=int)
        if skipped:
            log.warning(
                "ds1000: %d problem(s) skipped: library not installed (%s)",
                len(skipped),
                ", ".join(sorted({by_id[t]["library"] for t in skipped})),
            )
        return Prepared(
            keep,
            python=python,
            preimport=[m for m in settings.options["preimport"] if versions.get(m.split(".")[0])],
            time_limit_policy=time_limit_policy(
                settings, f"{settings.options['timeout_s']:g}s per program (wall time)"
            ),
            evaluator={"semantics": "ds1000-official"},  # code_context + test_execution (+ test_string)
            extra={"env": env, "mismatches": mismatches, "skipped": skipped, "tasks": by_id},
        )

    def make_job(self, jc: JobContext) -> Job:
        limit = jc.options["timeout_s"] * jc.time_factor
        sem = jc.settings.sem()
        sem["clock"] = "wall"  # library code may sleep or spawn threads; the official check is wall time
        lim = limits_for(jc.settings, limit, memory_mb=max(jc.settings.memory_mb, 16384))
        return Job(harness.run_ds1000, (jc.task["code_context"], jc.sample.solution, limit, sem), lim)

    def finalize(self, res: dict, prepared: Prepared) -> dict:
        extra = prepared.extra
        env, mismatches, skipped, tasks = extra["env"], extra["mismatches"], extra["skipped"], extra["tasks"]
        worker = res.get("execution_env") or {}
        res["execution_env"] = {
            **env,
            "preimported": worker.get("preimported", []),
            "official_pins": {m: v or "any" for m, v in OFFICIAL_PINS.items()},
            "pins_match": not mismatches,
            "mismatches": mismatches,
        }
        res["skipped"] = skipped
        res["skipped_reason"] = "library not importable in the execution environment" if skipped else ""
        res["failure_causes"] = _failure_causes(res["per_task"])
        by_lib: dict[str, tuple[list[int], list[int]]] = {}
        for tid, e in res["per_task"].items():
            ns, cs = by_lib.setdefault(tasks[tid]["library"], ([], []))
            ns.append(e["n"])
            cs.append(e["base_correct"])
        res["by_library"] = {lib: pass_at_k_table(ns, cs, [1])["pass@1"] for lib, (ns, cs) in sorted(by_lib.items())}
        return res


def execution_python(chosen: str | None) -> str:
    """The interpreter of DS-1000's execution environment (see the module doc): ``chosen`` (the option
    ``python``), else ``$EVOLCODER_DS1000_PYTHON``, else this one."""
    chosen = chosen or os.environ.get(PYTHON_ENV_VAR) or sys.executable
    path = shutil.which(chosen) or chosen
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise EvolcoderError(
            f"ds1000: execution interpreter not found: {chosen} (set "
            f"evaluation.benchmark_options.ds1000.python or ${PYTHON_ENV_VAR}; "
            "bash scripts/setup_ds1000.sh builds it)"
        )
    return os.path.abspath(path)


def _failure_causes(per_task: dict) -> dict[str, list[str]]:
    """Failed problems whose failure has an environmental cause, by cause (the rest are wrong)."""
    out: dict[str, list[str]] = {}
    for tid, e in per_task.items():
        for reasons in (e.get("reasons") or {}).values():
            cause = failure_cause(reasons.get("base") or "")
            if cause and tid not in out.get(cause, []):
                out.setdefault(cause, []).append(tid)
    return dict(sorted(out.items()))
