"""Benchmark adapters: registry, datasets, WizardCoder prompts, sanitising, prediction import."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import ClassVar

import pytest

from evolcoder.benchmarks import BENCHMARKS, get_benchmark
from evolcoder.benchmarks.postprocess import extract_code
from evolcoder.errors import DataError, EvolcoderError
from evolcoder.passk import pass_at_k, pass_at_k_table

DATA = Path(os.environ.get("EVOLCODER_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
HE = DATA / "evalplus" / "HumanEvalPlus-v0.1.10.jsonl.gz"
MBPP2 = DATA / "evalplus" / "MbppPlus-v0.2.0.jsonl.gz"
MBPP1 = DATA / "evalplus" / "MbppPlus-v0.1.0.jsonl.gz"
MBPP_ORIG = DATA / "mbpp" / "mbpp.test.jsonl"
DS = DATA / "ds1000" / "ds1000.jsonl.gz"
WIZ15 = DATA / "predictions" / "wizardcoder-15b-v1.0_humaneval_greedy.jsonl"
needs_data = pytest.mark.skipif(not HE.exists(), reason="shared data not available")


def test_registry_has_the_four_benchmarks():
    assert set(BENCHMARKS) == {"humaneval", "mbpp", "mbpp-original", "ds1000"}
    for name in BENCHMARKS:
        b = get_benchmark(name)
        assert b.name == name and b.stop_sequences
    with pytest.raises(EvolcoderError, match="unknown benchmark"):
        get_benchmark("apps")


def test_pass_at_k_unbiased_estimator():
    assert pass_at_k(10, 0, 1) == 0.0
    assert pass_at_k(10, 10, 5) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(5, 1, 2) == pytest.approx(1 - (4 * 3) / (5 * 4))
    table = pass_at_k_table([20, 20], [2, 0], [1, 10, 100])
    assert table["pass@1"] == 5.0 and "pass@10" in table and "pass@100" not in table
    assert pass_at_k_table([1] * 164, [1] * 98 + [0] * 66)["pass@1"] == 59.8


@needs_data
def test_humaneval_prompt_is_exactly_wizardcoders():
    """The released generations carry the prompt WizardCoder sent (all_code, tabs turned back into
    spaces): ours, after the same round trip, is identical (all 164: tests/test_wizardcoder_fidelity.py)."""
    from evolcoder.benchmarks.prompts import prompt_template

    b = get_benchmark("humaneval")
    tasks = {t["task_id"]: t for t in b.load_tasks(str(HE))}
    assert len(tasks) == 164
    undo = prompt_template("wizardcoder", "humaneval").undo
    with open(WIZ15) as fh:
        for line in list(fh)[:8]:
            rec = json.loads(line)
            sent = rec["all_code"].split("### Response:")[0] + "### Response:"
            assert undo(b.build_prompt(tasks[rec["task_id"]])) == sent


@needs_data
def test_dataset_info_records_version_and_sha():
    info = get_benchmark("humaneval").dataset_info(str(HE))
    assert info["version"] == "v0.1.10" and len(info["sha256"]) == 64 and info["n_tasks"] == 164
    assert get_benchmark("mbpp").dataset_info(str(MBPP2))["n_tasks"] == 378
    assert get_benchmark("mbpp").dataset_info(str(MBPP1))["version"] == "v0.1.0"
    assert get_benchmark("mbpp-original").dataset_info(str(MBPP_ORIG))["n_tasks"] == 500


@needs_data
def test_mbpp_plus_prompts_come_from_wizardcoders_file():
    b = get_benchmark("mbpp", prompts_file=str(DATA / "mbpp" / "wizardcoder_mbppplus_prompts.json"))
    task = b.load_tasks(str(MBPP2))[0]
    prompt = b.build_prompt(task)
    assert "### Instruction:\nWrite a function to find the shared elements" in prompt  # mbppplus_gen.py
    assert "Your code should satisfy the following assertion:\n```python\nassert set(similar_elements(" in prompt
    # without the file, the same text is rebuilt from the evalplus prompt
    b2 = get_benchmark("mbpp", prompts_file="/nonexistent.json")
    t2 = b2.load_tasks(str(MBPP2))[0]
    t2["instruction"] = None
    assert "Your code should satisfy the following assertion" in b2.build_prompt(t2)


@needs_data
def test_mbpp_original_prompt_like_wizardcoder_mbpp_gen():
    b = get_benchmark("mbpp-original")
    task = b.load_tasks(str(MBPP_ORIG))[0]
    assert b.problem_text(task) == (
        "\nWrite a python function to remove first and last occurrence of a given character from the string."
        "\nTest examples:\n" + "\n".join(task["test_list"])
    )


@needs_data
def test_ds1000_loads_2024_format():
    b = get_benchmark("ds1000")
    tasks = b.load_tasks(str(DS))
    assert len(tasks) == 1000 and tasks[0]["task_id"] == "0" and tasks[0]["library"] == "Pandas"
    assert b.postprocess(tasks[0], "```python\nresult = df.iloc[List]\n```\nExplanation") == "result = df.iloc[List]\n"
    assert b.postprocess(tasks[0], "result = 1\n</code>\nEND SOLUTION") == "result = 1\n"


def test_extract_code_lenient_for_benchmarks_without_a_wizardcoder_script():
    raw = (
        "Here's the script:\r\n\r\n```python\r\ndef f(x):\r\n    return x\r\n\r\n"
        'if __name__ == "__main__":\r\n    print(f(1))\r\n```\r\nIt works.'
    )
    assert extract_code(raw) == "def f(x):\n    return x\n"
    assert extract_code("def f():\n    pass\n# Example usage\nf()") == "def f():\n    pass\n"
    assert extract_code("```python\ndef f():\n    return 1") == "def f():\n    return 1\n"  # unclosed


@needs_data
def test_humaneval_postprocess_is_prompt_plus_extracted_code():
    """process_humaneval.py --add_prompt + the scorer: prompt + completion, always."""
    b = get_benchmark("humaneval")
    task = b.load_tasks(str(HE))[2]  # truncate_number
    body = "    return number % 1.0\n"
    assert b.postprocess(task, body) == task["prompt"] + body
    full = "def truncate_number(number):\n    return number % 1.0\n"
    assert b.postprocess(task, "### Response:```python\n" + full + "```") == task["prompt"] + full.strip()


@needs_data
def test_prediction_formats(tmp_path):
    b = get_benchmark("humaneval")
    tasks = b.load_tasks(str(HE))
    t0 = tasks[0]
    p = tmp_path / "p.jsonl"
    p.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"task_id": "HumanEval/0", "solution": "S"},
                {"task_id": "HumanEval/0", "completion": "C"},
                {
                    "task_id": "0",
                    "all_code": "### Response:```python\ndef has_close_elements(a, b):\n    return 1\n```",
                },
                {"task_id": "HumanEval/0", "raw": "def has_close_elements(a, b):\n    return 2\n"},
            ]
        )
        + "\n"
    )
    samples = b.load_predictions(str(p), tasks)
    assert [s.sample_idx for s in samples] == [0, 1, 2, 3]
    assert samples[0].solution == "S" and samples[1].solution == t0["prompt"] + "C"
    assert "return 1" in samples[2].solution and "return 2" in samples[3].solution
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"task_id": "HumanEval/999", "solution": "x"}) + "\n")
    with pytest.raises(DataError, match=r"none of its 1 task ids is in humaneval.*HumanEval/999"):
        b.load_predictions(str(bad), tasks)
    bad.write_text(json.dumps({"task_id": "HumanEval/1"}) + "\n")
    with pytest.raises(DataError, match="none of solution"):
        b.load_predictions(str(bad), tasks)


def test_score_settings_are_flat():
    """The score rule passes the flat settings of evolcoder.workflow.settings_for: every execution key
    applies (semantics, retries), with postprocess, the benchmark's options (its block of
    evaluation.benchmark_options) and ks; an unknown or nested key is an error."""
    import pytest

    from evolcoder.benchmarks.verdicts import ScoreSettings
    from evolcoder.errors import EvolcoderError

    s = ScoreSettings.from_dict(
        {
            "semantics": "evalplus-0.2.0",
            "retries": 3,
            "options": {"python": "/opt/ds/bin/python"},
            "postprocess": "evalplus",
            "ks": [1, 10],
        }
    )
    assert (s.semantics, s.retries, s.options["python"], s.postprocess, s.ks) == (
        "evalplus-0.2.0",
        3,
        "/opt/ds/bin/python",
        "evalplus",
        [1, 10],
    )
    for nested in ({"jbos": 2}, {"execution": {"jobs": 2}}, {"limit": 12}):
        with pytest.raises(EvolcoderError, match="unknown key"):
            ScoreSettings.from_dict(nested)


def test_the_adapter_contract_is_eight_hooks_and_the_rest_is_final():
    """An adapter overrides at most the eight hooks; overriding anything else of Benchmark is an error
    when the class is defined, naming the method."""
    from evolcoder.benchmarks import adapter_class
    from evolcoder.benchmarks.base import HOOKS, Benchmark

    assert len(HOOKS) <= 8
    for hook in HOOKS:
        assert hook in Benchmark.__dict__ and f"{hook}(" in Benchmark.__doc__
    for name in BENCHMARKS:
        klass = adapter_class(name)
        overridden = {n for c in klass.__mro__[:-2] for n in vars(c) if n in vars(Benchmark) and callable(vars(c)[n])}
        assert overridden <= set(HOOKS), (name, overridden - set(HOOKS))
    with pytest.raises(TypeError, match="overrides load_predictions: final in Benchmark"):
        type("Bad", (Benchmark,), {"load_predictions": lambda self, *a: []})


def test_benchmark_options_take_the_declared_defaults_and_reject_unknown_names():
    ds = get_benchmark("ds1000")
    opts = ds.resolve_options({"timeout_s": 30})
    assert opts["timeout_s"] == 30 and opts["python"] is None and "numpy" in opts["preimport"]
    with pytest.raises(EvolcoderError, match=r"benchmark ds1000: unknown option\(s\) pyhton \(it takes python"):
        ds.resolve_options({"pyhton": "/usr/bin/python3"})
    with pytest.raises(EvolcoderError, match=r"benchmark humaneval: unknown option\(s\) x \(it takes none\)"):
        get_benchmark("humaneval").resolve_options({"x": 1})


def test_the_scoring_loop_decides_stopped_jobs_and_the_adapter_the_rest(tmp_path):
    """A job the sandbox stopped (here a crash; a timeout alike) never reaches the adapter's check: the
    loop decides it, in one place."""
    from evolcoder.benchmarks import harness
    from evolcoder.benchmarks.base import Benchmark, Dataset, JobContext
    from evolcoder.benchmarks.verdicts import ScoreSettings, limits_for
    from evolcoder.sandbox.jobs import Job
    from evolcoder.score import score_samples

    checked = []

    class Asserts(Benchmark):
        name = "asserts"
        labels: ClassVar[dict[str, str]] = {"base": "Asserts"}

        def load(self, data_path):
            tasks = [{"task_id": f"A/{i}", "prompt": "", "test_list": ["assert f() == 1"]} for i in range(3)]
            return Dataset(tasks, str(data_path), "v1")

        def make_job(self, jc: JobContext) -> Job:
            args = (jc.sample.solution, "", list(jc.task["test_list"]), 60.0, jc.settings.sem())
            return Job(harness.run_assert_leaves, args, limits_for(jc.settings, 1.0))  # the sandbox stops it first

        def check(self, jc: JobContext, output: dict) -> dict:
            checked.append(jc.task["task_id"])
            return harness.check_asserts(output, jc.task["test_list"])

    data = tmp_path / "d.jsonl"
    data.write_text("{}\n")
    from evolcoder.benchmarks.base import Sample

    samples = [
        Sample("A/0", 0, "def f():\n    return 1\n"),
        Sample("A/1", 0, "import os\nos._exit(3)\n"),
        Sample("A/2", 0, "def f():\n    return 2\n"),
    ]
    res = score_samples(Asserts(), samples, str(data), ScoreSettings(jobs=1, retries=0))
    assert [e["base"][0] for e in res["per_task"].values()] == ["pass", "fail", "fail"]
    assert "exit" in res["per_task"]["A/1"]["reasons"]["0"]["base"]
    assert checked == ["A/0", "A/2"] and res["evaluator"]["time_limit_policy"].startswith("10s per program (cpu time)")


def test_no_private_name_of_the_adapters_or_the_scorer_is_imported_elsewhere():
    import re

    files = [*(Path(__file__).resolve().parents[1] / "src" / "evolcoder").rglob("*.py")]
    files += (Path(__file__).parent / "extra_benchmark").glob("*.py")
    private = re.compile(r"from evolcoder\.(benchmarks[\w.]*|score) import ([^\n]*\b_[a-z]\w*)")
    hits = [f"{p.name}: {m.group(0)}" for p in files for m in private.finditer(p.read_text())]
    assert hits == []
