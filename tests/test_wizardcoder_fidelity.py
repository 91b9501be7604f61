"""Our own generations go through exactly what WizardCoder's released scripts do between the model and
the score: the prompt (per release, with the tab round trip), the post-processing (process_humaneval.py,
mbppplus_process_preds.py), and the prediction import (tasks the dataset lacks are skipped and recorded)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evolcoder.benchmarks import get_benchmark
from evolcoder.benchmarks.postprocess import process_humaneval, process_mbpp, process_mbppplus
from evolcoder.benchmarks.prompts import PromptTemplate, prompt_template, template_names
from evolcoder.errors import DataError

from conftest import score_argv, test_timings

DATA = Path(os.environ.get("EVOLCODER_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
HE = DATA / "evalplus" / "HumanEvalPlus-v0.1.10.jsonl.gz"
MBPP2 = DATA / "evalplus" / "MbppPlus-v0.2.0.jsonl.gz"
PROMPTS = DATA / "mbpp" / "wizardcoder_mbppplus_prompts.json"
WIZ15 = DATA / "predictions" / "wizardcoder-15b-v1.0_humaneval_greedy.jsonl"
needs_data = pytest.mark.skipif(not WIZ15.exists(), reason="shared data not available")
SRC = Path(__file__).resolve().parents[1] / "src"
HEADER = "Below is an instruction that describes a task. Write a response that appropriately completes the request."


def _released_15b() -> list[dict]:
    return [json.loads(line) for line in WIZ15.read_text(encoding="utf-8").splitlines()]


def _decode_cleanup(text: str) -> str:
    """What ``tokenizer.batch_decode`` (clean_up_tokenization_spaces) did to the prompt part of the
    released ``all_code``: the generation scripts decode the whole sequence, prompt included."""
    from transformers import PreTrainedTokenizerBase

    return PreTrainedTokenizerBase.clean_up_tokenization(None, text)


# ----------------------------------------------------------------------------- prompts


def test_templates_per_release_are_data_files():
    assert {"wizardcoder", "wizardcoder-v1.1", "plain"} <= set(template_names())
    he15 = prompt_template("wizardcoder", "humaneval")
    he11 = prompt_template("wizardcoder-v1.1", "humaneval")
    mbpp = prompt_template("wizardcoder", "mbpp")
    assert he15.tabs and he11.tabs and mbpp.tabs and not prompt_template("plain", "humaneval").tabs
    assert he15.text == (
        HEADER + "\n\n### Instruction:\nCreate a Python script for this problem:\n{problem}\n\n### Response:"
    )
    # 33B-V1.1's all_code shows "\n\n    \n### Instruction:": a tab line, after the tab round trip
    assert he11.undo(he11.text) == he15.text.replace("\n\n### Instruction:", "\n\n    \n### Instruction:")
    # mbppplus_gen.py: no "Create a Python script", one more newline; same in both releases
    assert mbpp.text == HEADER + "\n\n\n### Instruction:\n{problem}\n\n### Response:"
    assert prompt_template("wizardcoder-v1.1", "mbpp").text == mbpp.text
    # the tab substitution: in on the way in, undone on the way out
    t = PromptTemplate("x", "{problem}", tabs=True)
    assert t.fill("def f():\n        return 1") == "def f():\n\t\treturn 1"
    assert t.undo("\t\treturn 1") == "        return 1"


@needs_data
def test_humaneval_prompts_are_byte_for_byte_the_released_15b_prompts():
    """Every one of the 164 prompts of WizardCoder-15B-V1.0's released greedy generations, rebuilt."""
    b = get_benchmark("humaneval")
    tasks = {t["task_id"]: t for t in b.load_tasks(str(HE))}
    tpl = prompt_template("wizardcoder", "humaneval")
    rows = _released_15b()
    assert len(rows) == 164
    for rec in rows:
        sent = b.build_prompt(tasks[rec["task_id"]], "wizardcoder")
        assert "\t" in sent and "    " not in sent.split("problem:\n", 1)[1]  # the model saw tabs
        seen = _decode_cleanup(tpl.undo(sent))
        assert rec["all_code"].startswith(seen), rec["task_id"]
        assert rec["all_code"][len(seen) : len(seen) + 1] != "", rec["task_id"]  # an answer follows
    # HumanEval/115: the original HumanEval prompt (import inside the function), as humaneval_gen.py reads it
    assert "def max_fill(grid, capacity):\n    import math" in tpl.undo(b.build_prompt(tasks["HumanEval/115"]))
    assert "import math\n\ndef max_fill" in b.build_prompt(tasks["HumanEval/115"], "plain")


@needs_data
def test_mbpp_plus_prompt_is_mbppplus_gen_with_the_prompts_file_as_it_is():
    prompts = json.loads(PROMPTS.read_text(encoding="utf-8"))
    b = get_benchmark("mbpp", prompts_file=str(PROMPTS))
    tasks = b.load_tasks(str(MBPP2))
    for t in tasks:
        expected = (
            HEADER + "\n\n\n### Instruction:\n" + prompts[t["task_id"]].replace("    ", "\t") + "\n\n### Response:"
        )
        assert b.build_prompt(t, "wizardcoder") == expected
        assert b.build_prompt(t, "wizardcoder-v1.1") == expected


# ----------------------------------------------------------------------------- post-processing


def test_process_humaneval_is_wizardcoders_script():
    raw = (
        "Here's the script:\r\n\r\n```python\r\ndef f(x):\r\n    return math.ceil(x)\r\n\r\n"
        'if __name__ == "__main__":\r\n    print(f(1))\r\n```\r\nIt works.'
    )
    assert process_humaneval(raw) == "def f(x):\n    return math.ceil(x)"
    assert process_humaneval("def f():\n    pass\n# Example usage\nf()") == "def f():\n    pass"
    assert process_humaneval("```python\ndef f():\n    return 1") == "\ndef f():\n    return 1"  # unclosed: as there
    # no ```python block: the text as it is, as the script keeps it
    assert process_humaneval("    return 1\n") == "    return 1\n"
    # MBPP+: the code is cut at the first assert (the model's own test)
    ans = "```python\ndef g(a):\n    return a + 1\n\nassert g(1) == 3\n```"
    assert process_mbppplus(ans) == "def g(a):\n    return a + 1"
    assert process_humaneval(ans) == "def g(a):\n    return a + 1\n\nassert g(1) == 3"
    assert (
        process_mbpp("```python\ndef g(a):\n    return a\n# Test examples\nprint(g(1))\n```")
        == "def g(a):\n    return a"
    )


@needs_data
def test_humaneval_program_is_prompt_plus_code_always():
    """An answer that uses the prompt's import without repeating it passes, as upstream."""
    b = get_benchmark("humaneval")
    tasks = {t["task_id"]: t for t in b.load_tasks(str(HE))}
    t = tasks["HumanEval/115"]
    answer = "```python\ndef max_fill(grid, capacity):\n    return sum(math.ceil(sum(r) / capacity) for r in grid)\n```"
    prog = b.postprocess(t, "### Response:" + answer)
    assert (
        prog
        == t["prompt"] + "def max_fill(grid, capacity):\n    return sum(math.ceil(sum(r) / capacity) for r in grid)"
    )
    ns: dict = {}
    exec(prog, ns)  # the prompt's `import math` is there
    assert ns["max_fill"]([[0, 0, 1, 1], [0, 1, 1, 1]], 2) == 3


@needs_data
def test_evalplus_postprocess_is_the_librarys_sanitize():
    from evalplus.sanitize import sanitize

    b = get_benchmark("humaneval")
    t = b.load_tasks(str(HE))[2]  # truncate_number
    answer = "Sure:\n```python\nimport math\ndef truncate_number(number):\n    return number % 1.0\nprint(1)\n```\n"
    assert b.postprocess(t, answer, "evalplus") == sanitize(answer, entrypoint="truncate_number")
    assert "print(1)" not in b.postprocess(t, answer, "evalplus")
    body = "    return number % 1.0\n"  # a body completion is sanitised after the prompt
    assert b.postprocess(t, body, "evalplus") == sanitize(t["prompt"] + body, entrypoint="truncate_number")


@needs_data
def test_gather_undoes_the_tabs_and_keeps_raw_and_program(tmp_path):
    from evolcoder.generate import GenSettings, gather, run_generation

    class TabModel:  # answers in the tab-indented style the tabbed prompt invites
        def generate(self, prompts, stops, seed):
            return [
                "Here:\n```python\nimport math\ndef similar_elements(a, b):\n\treturn set(a) & set(b)\n\n"
                "assert similar_elements([1], [2]) == {1}\n```"
                for _ in prompts
            ]

    raw = tmp_path / "greedy.raw.jsonl"
    run_generation("unused", "mbpp", str(raw), GenSettings.from_dict({"limit": 2}), str(MBPP2), backend=TabModel())
    recs = [json.loads(line) for line in raw.read_text().splitlines()]
    assert all(r["tabs"] is True and "\treturn" in r["raw"] for r in recs)
    out = tmp_path / "greedy.jsonl"
    gather("mbpp", [str(raw)], str(out), str(MBPP2))
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert got[0]["task_id"] == "Mbpp/2"
    assert got[0]["solution"] == (
        "import math\ndef similar_elements(a, b):\n    return set(a) & set(b)"
    )  # tabs undone,
    # the model's own (wrong) test cut
    assert got[0]["raw"] == recs[0]["raw"] and got[0]["postprocess"] == "wizardcoder"
    gather("mbpp", [str(raw)], str(out), str(MBPP2), postprocess="evalplus")
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert got[0]["postprocess"] == "evalplus"
    assert (
        got[0]["solution"].strip() == "import math\ndef similar_elements(a, b):\n    return set(a) & set(b)"
    )  # no assert


# ----------------------------------------------------------------------------- prediction import


@needs_data
def test_prediction_import_skips_unknown_ids_and_records_uneven_n(tmp_path, caplog):
    b = get_benchmark("humaneval")
    tasks = b.load_tasks(str(HE))
    p = tmp_path / "p.jsonl"
    p.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"task_id": "HumanEval/0", "solution": "A"},
                {"task_id": "HumanEval/0", "solution": "B"},
                {"task_id": "HumanEval/1", "solution": "C"},
                {"task_id": "HumanEval/999", "solution": "x"},
                {"task_id": "HumanEval/998", "solution": "y"},
            ]
        )
        + "\n"
    )
    report: dict = {}
    with caplog.at_level("WARNING"):
        samples = b.load_predictions(str(p), tasks, report=report)
    assert [(s.task_id, s.sample_idx) for s in samples] == [("HumanEval/0", 0), ("HumanEval/0", 1), ("HumanEval/1", 0)]
    assert report["not_in_dataset"] == {"count": 2, "lines": 2, "task_ids": ["HumanEval/998", "HumanEval/999"]}
    assert report["uneven_samples"] == {"min": 1, "max": 2, "most_common": 1, "tasks": {"HumanEval/0": 2}}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert sum("not in the humaneval dataset" in w for w in warnings) == 1
    assert sum("uneven number of samples" in w for w in warnings) == 1
    p.write_text(json.dumps({"task_id": "Mbpp/2", "solution": "x"}) + "\n")
    with pytest.raises(DataError, match="none of its 1 task ids is in humaneval"):
        b.load_predictions(str(p), tasks)


@needs_data
def test_non_utf8_predictions_are_a_one_line_error(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_bytes(b'{"task_id": "HumanEval/0", "solution": "ok"}\n{"task_id": "HumanEval/1", "solution": "\xe9"}\n')
    env = dict(os.environ, PYTHONPATH=str(SRC))
    proc = subprocess.run(
        score_argv("humaneval", p, HE, tmp_path / "s.json"),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{p}:2: not UTF-8 text (byte 0xe9" in proc.stderr


# ----------------------------------------------------------------------------- scored, for real


@pytest.mark.slow
@needs_data
def test_released_15b_all_code_post_processed_gives_the_completions_verdicts(tmp_path):
    """The raw outputs inside the released generations (all_code), through our post-processing, give the
    per-task verdicts of the released completions, base and plus: scored together as 2 samples per task."""
    from evolcoder.score import score_file

    rows = _released_15b()
    b = get_benchmark("humaneval")
    tasks = {t["task_id"]: t for t in b.load_tasks(str(HE))}
    same = sum(
        b.solution_from_record(tasks[r["task_id"]], {"all_code": r["all_code"]})
        == b.solution_from_record(tasks[r["task_id"]], {"completion": r["completion"]})
        for r in rows
    )
    assert same == 164  # the very programs
    pred = tmp_path / "both.jsonl"
    pred.write_text(
        "".join(
            json.dumps({"task_id": r["task_id"], "all_code": r["all_code"]})
            + "\n"
            + json.dumps({"task_id": r["task_id"], "completion": r["completion"]})
            + "\n"
            for r in rows
        )
    )
    res = score_file(
        "humaneval", str(pred), str(HE), {"jobs": 2, "timings": test_timings("humaneval", HE), "reference_repeats": 1}
    )
    per = res["per_task"]
    assert len(per) == 164 and res["n_samples_per_task"] == 2
    assert sum(e["base"][0] == e["base"][1] for e in per.values()) == 164
    assert sum(e["plus"][0] == e["plus"][1] for e in per.values()) == 164
    assert sum(e["base"][0] == "pass" for e in per.values()) == 98  # 59.8
    assert res["base"]["pass@1"] == 59.8 and res["plus"]["pass@1"] == 53.7


@pytest.mark.slow
@needs_data
def test_mbpp_raw_outputs_of_the_mbppplus_prompt_family_score_and_extra_ids_are_skipped(tmp_path):
    """Raw outputs in WizardCoder's MBPP+ format (prompt from the shared prompts file + an answer that appends
    its own, wrong, test) are scored through mbppplus_process_preds.py's processing; a v0.1.0-era file
    (ids MBPP+ v0.2.0 dropped) scores the tasks v0.2.0 has, warns once and records the rest."""
    prompts = json.loads(PROMPTS.read_text(encoding="utf-8"))
    b = get_benchmark("mbpp", prompts_file=str(PROMPTS))
    tasks = {t["task_id"]: t for t in b.load_tasks(str(MBPP2))}
    dropped = sorted(set(prompts) - set(tasks))
    assert len(prompts) == 399 and len(dropped) == 21 and "Mbpp/229" in dropped
    tpl = prompt_template("wizardcoder", "mbpp")
    recs = []
    # canonical solutions stand in for the model's code; those that use `assert` themselves (Mbpp/62) would be cut
    # there too: upstream's cut is at the first "assert" anywhere
    assert process_mbppplus(tasks["Mbpp/62"]["canonical_solution"]).endswith("def smallest_num(xs):")
    clean = [tid for tid, t in tasks.items() if "assert" not in t["canonical_solution"]][:30]
    for tid in clean + dropped:
        t = tasks.get(tid)
        code = t["canonical_solution"] if t else "def f():\n    return 0\n"
        # a model's answer in the tab style of its prompt, with a test of its own that fails
        answer = (
            "Here's the function:\r\n\r\n```python\r\n"
            + code.replace("    ", "\t").replace("\n", "\r\n")
            + "\r\n\r\nassert 1 == 2, 'my own test'\r\n```\r\n\r\nIt works."
        )
        sent = tpl.fill(prompts[tid])
        if t:
            assert sent == b.build_prompt(t)
        recs.append({"task_id": tid, "all_code": tpl.undo(sent + answer)})  # as mbppplus_gen.py writes it
    pred = tmp_path / "mbpp_raw.jsonl"
    pred.write_text("".join(json.dumps(r) + "\n" for r in recs))
    out = tmp_path / "score.json"
    env = dict(os.environ, PYTHONPATH=str(SRC))
    settings = json.dumps({"timings": test_timings("mbpp", MBPP2), "reference_repeats": 1})
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "evolcoder.cli",
            "score",
            "--benchmark",
            "mbpp",
            "--predictions",
            str(pred),
            "--data",
            str(MBPP2),
            "--option",
            f"prompts_file={PROMPTS}",
            "--out",
            str(out),
            "--jobs",
            "2",
            "--settings-json",
            settings,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.count("not in the mbpp dataset") == 1 and "21 task(s)" in proc.stderr
    res = json.loads(out.read_text())
    assert res["n_tasks"] == 30 and not res["complete"]
    assert res["base"]["pass@1"] == 100.0 and res["plus"]["pass@1"] == 100.0  # the wrong test was cut
    assert res["not_in_dataset"]["count"] == 21 and res["not_in_dataset"]["task_ids"] == sorted(
        dropped, key=lambda s: int(s.split("/")[1])
    )
    assert "21 task id(s) not in the dataset skipped" in proc.stdout
