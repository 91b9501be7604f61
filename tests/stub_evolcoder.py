"""A stand-in ``evolcoder`` for DAG tests: writes each stage's outputs at once, with a scripted pass@1.

The stages that build data or models (seed, evolve, merge, tokenize, train, generate, gather, timings, plots,
export-data, model-card) write placeholder outputs; ``score`` writes a score file whose pass@1 is
``$EVOLCODER_STUB_METRIC[model]`` (JSON; the model is the checkpoint's name, or ``base`` for a model spec);
every other command (select-round, table, ablation-table) is the real one. ``$EVOLCODER_STUB_CALLS`` (a file)
records each call.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def _opt(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def _write(path: str | Path, text: str) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def _score(argv: list[str]) -> None:
    preds = Path(_opt(argv, "--predictions")).read_text().splitlines()
    spec = json.loads(preds[0])["model"]
    parts = Path(spec).parts
    model = parts[-2] if len(parts) >= 2 and parts[-1] == "model" else "base"
    metric = json.loads(os.environ["EVOLCODER_STUB_METRIC"])[model]
    n_tasks = 20
    passed = round(metric / 100 * n_tasks)
    per_task = {
        f"HumanEval/{t}": {"n": 1, "base": ["pass" if t < passed else "fail"], "base_correct": int(t < passed)}
        for t in range(n_tasks)
    }
    res = {
        "model": _opt(argv, "--model-name"),
        "benchmark": _opt(argv, "--benchmark"),
        "labels": {"base": "HumanEval", "plus": "HumanEval+"},
        "n_samples_per_task": 1,
        "n_tasks": n_tasks,
        "dataset": {"name": "humaneval", "version": "stub", "sha256": "00" * 32},
        "evaluator": {"name": "stub", "version": "0", "semantics": "scripted"},
        "base": {"pass@1": 100.0 * passed / n_tasks},
        "per_task": per_task,
    }
    _write(_opt(argv, "--out"), json.dumps(res))


def main(argv: list[str]) -> None:
    if os.environ.get("EVOLCODER_STUB_CALLS"):
        with open(os.environ["EVOLCODER_STUB_CALLS"], "a") as fh:
            fh.write(json.dumps(argv) + "\n")
    cmd, rest = argv[0], argv[1:]
    record = json.dumps({"instruction": "x", "input": "", "output": "y", "round": 0}) + "\n"
    if cmd == "seed":
        _write(_opt(rest, "--out"), record)
    elif cmd == "evolve":
        out = Path(_opt(rest, "--out-dir"))
        for name in ("evolved.jsonl", "rejects.jsonl", "pool.jsonl"):
            _write(out / name, record)
        _write(out / "stats.json", json.dumps({"round": int(_opt(rest, "--round"))}))
        _write(out / "ledger.json", "{}")
    elif cmd == "merge":
        out = Path(_opt(rest, "--out-dir"))
        n = 1 + rest.count("--round")
        _write(out / "train.jsonl", record * n)
        _write(out / "stats.json", json.dumps({"records": n, "by_round": {}}))
        _write(out / "decontamination.json", "{}")
    elif cmd in ("tokenize", "timings", "gather", "plot-evolution", "plot-training"):
        out = _opt(rest, "--out")
        if cmd == "gather":  # the shards' lines (the model spec) travel on
            _write(out, "".join(Path(p).read_text() for p in rest if p.endswith(".raw.jsonl")))
        else:
            _write(out, "stub\n")
    elif cmd == "train":
        out = Path(_opt(rest, "--out-dir"))
        _write(out / "model" / "config.json", json.dumps({"data": _opt(rest, "--data")}))
        _write(out / "log_history.json", "[]")
    elif cmd == "generate":
        _write(_opt(rest, "--out"), json.dumps({"model": _opt(rest, "--model")}) + "\n")
    elif cmd == "score":
        _score(rest)
    elif cmd == "export-data":
        out = Path(_opt(rest, "--out-dir"))
        _write(out / "README.md", "stub\n")
        _write(out / "data" / "train-00000-of-00001.parquet", "stub\n")
    elif cmd == "model-card":
        _write(_opt(rest, "--out"), "{}\n")
    else:
        os.execv(sys.executable, [sys.executable, "-m", "evolcoder.cli", *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
