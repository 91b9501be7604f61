"""Results table: published numbers beside ours, differences marked, provenance per number."""

from __future__ import annotations

import csv
import json

from evolcoder.table import load_published, write_table


def _score(model, bench, base, plus=None, n=1, semantics="evalplus-0.3.1", version="v0.1.10"):
    res = {
        "model": model,
        "benchmark": bench,
        "n_samples_per_task": n,
        "n_tasks": 164,
        "complete": True,
        "dataset": {"name": bench, "version": version, "sha256": "ab" * 32},
        "evaluator": {
            "name": "evolcoder",
            "version": "0.1.0",
            "semantics": semantics,
            "time_limit_policy": "per test max(1s, 4 x reference cpu time)",
        },
        "base": base,
        "retried": ["HumanEval/55"],
    }
    if plus is not None:
        res["plus"] = plus
    return res


def test_table_marks_differences_and_states_provenance(tmp_path):
    a = tmp_path / "a" / "humaneval" / "greedy.json"
    b = tmp_path / "b" / "mbpp" / "greedy.json"
    c = tmp_path / "c" / "humaneval" / "sampled.json"
    for path, res in [
        (a, _score("wizardcoder-15b-v1.0_humaneval_greedy", "humaneval", {"pass@1": 59.8}, {"pass@1": 53.7})),
        (b, _score("WizardCoder-33B-V1.1", "mbpp", {"pass@1": 82.0}, {"pass@1": 68.5}, version="v0.2.0")),
        (c, _score("evolcoder-smollm2", "humaneval", {"pass@1": 1.2, "pass@10": 5.0}, {"pass@1": 1.0}, n=20)),
    ]:
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(res))
    rows = write_table([str(a), str(b), str(c)], str(tmp_path / "out"))
    by = {(r["model"], r["benchmark"]): r for r in rows}
    he = by[("wizardcoder-15b-v1.0_humaneval_greedy", "HumanEval")]
    assert he["published_reference"] == 59.8 and he["delta"] == 0.0 and not he["differs"]
    assert "57.3" in he["published"]
    mb = by[("WizardCoder-33B-V1.1", "MBPP+")]
    assert mb["differs"] and mb["delta"] == 1.6 and "v0.2.0" in mb["dataset"]
    ours = by[("evolcoder-smollm2", "HumanEval")]
    assert ours["mode"] == "sampled" and ours["pass@10"] == 5.0 and ours["published"] == ""
    md = (tmp_path / "out" / "scores.md").read_text()
    assert "**+1.6** ⚠" in md and "evalplus-0.3.1" in md and "max(1s, 4 x reference" in md
    assert (tmp_path / "out" / "scores.png").stat().st_size > 1000
    with open(tmp_path / "out" / "scores.csv") as fh:
        assert len(list(csv.DictReader(fh))) == len(rows) == 6
    assert json.loads((tmp_path / "out" / "scores.json").read_text())["rows"]


def test_published_file_has_a_source_for_every_number():
    for e in load_published():
        assert e["source"] and e["setting"] and isinstance(e["value"], float)


def test_table_states_the_ds1000_execution_environment(tmp_path):
    """A DS-1000 number says whether it ran against the official library pins, and what was skipped."""
    pinned = {"pins_match": True, "python": "3.11.7", "mismatches": {}}
    other = {
        "pins_match": False,
        "python": "3.11.7",
        "mismatches": {"numpy": {"want": "1.26.4", "have": "2.4.6"}, "tensorflow": {"want": "2.16.1", "have": None}},
    }
    files = []
    for name, env, skipped in [("pinned", pinned, []), ("other", other, [str(i) for i in range(955, 1000)])]:
        res = _score(name, "ds1000", {"pass@1": 98.5}, semantics="ds1000-official", version="2024-1000")
        res.update(execution_env=env, skipped=skipped, n_tasks=1000 - len(skipped))
        path = tmp_path / name / "ds1000" / "greedy.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(res))
        files.append(str(path))
    rows = {r["model"]: r for r in write_table(files, str(tmp_path / "out"))}
    assert rows["pinned"]["execution_env"] == "official library pins (python 3.11.7)"
    assert rows["other"]["execution_env"].startswith("⚠ not the official library pins: numpy 2.4.6 (pin 1.26.4)")
    assert "tensorflow missing" in rows["other"]["execution_env"]
    md = (tmp_path / "out" / "scores.md").read_text()
    assert "955, 45 skipped" in md and "official library pins (python 3.11.7)" in md


def test_15b_humaneval_plus_has_its_published_52_4_and_the_difference_is_explained_or_not(tmp_path):
    a = tmp_path / "WizardCoder-15B-V1.0" / "humaneval" / "greedy.json"
    a.parent.mkdir(parents=True)
    a.write_text(json.dumps(_score("WizardCoder-15B-V1.0", "humaneval", {"pass@1": 59.8}, {"pass@1": 53.7})))
    rows = {r["benchmark"]: r for r in write_table([str(a)], str(tmp_path / "out"))}
    plus = rows["HumanEval+"]
    assert plus["published_reference"] == 52.4 and plus["delta"] == 1.3 and plus["differs"]
    assert "HumanEval+ v0.1.10" in plus["difference_note"] and "unexplained" in plus["difference_note"]
    assert rows["HumanEval"]["published_reference"] == 59.8 and not rows["HumanEval"]["differs"]  # greedy, not 57.3
    md = (tmp_path / "out" / "scores.md").read_text()
    assert "| HumanEval+ | greedy |" in md and "**+1.3** ⚠" in md
    assert "- WizardCoder-15B-V1.0 HumanEval+ (greedy): published 52.4 = 86/164" in md


def test_reproduction_rows_are_matched_to_the_papers_numbers_and_comparison_rows_are_a_separate_block(tmp_path):
    files = []
    for mode, n, base in [("greedy", 1, {"pass@1": 55.0}), ("sampled", 20, {"pass@1": 57.3, "pass@10": 70.0})]:
        path = tmp_path / "wizardcoder-15b-repro" / "humaneval" / f"{mode}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        res = _score("wizardcoder-15b-repro", "humaneval", base, {"pass@1": 50.0}, n=n)
        res["not_in_dataset"] = {"count": 2, "lines": 2, "task_ids": ["HumanEval/998", "HumanEval/999"]}
        path.write_text(json.dumps(res))
        files.append(str(path))
    rows = write_table(
        files, str(tmp_path / "out"), matches={"wizardcoder-15b-repro": "WizardCoder-15B-V1.0"}, comparison=True
    )
    by = {(r["benchmark"], r["mode"]): r for r in rows}
    assert by[("HumanEval", "greedy")]["published_reference"] == 59.8 and by[("HumanEval", "greedy")]["delta"] == -4.8
    assert by[("HumanEval", "sampled")]["published_reference"] == 57.3 and by[("HumanEval", "sampled")]["delta"] == 0.0
    assert by[("HumanEval+", "greedy")]["published_reference"] == 52.4
    assert by[("HumanEval+", "sampled")]["published_reference"] is None  # nothing published for that setting
    md = (tmp_path / "out" / "scores.md").read_text()
    assert "wizardcoder-15b-repro (reproduces WizardCoder-15B-V1.0)" in md
    flat = " ".join(md.split())  # footnotes wrap at 120 columns
    assert "2 ids not in dataset skipped" in flat and "HumanEval/998 HumanEval/999" in flat
    block = md.split("### Published comparison rows", 1)[1]
    assert "| StarCoder-15B | HumanEval | 33.6 |" in block and "| GPT-4-Turbo (Nov 2023) | HumanEval+ | 81.7 |" in block
    assert "StarCoder" not in md.split("### Published comparison rows", 1)[0]
    # without --comparison there is no such block
    write_table(files, str(tmp_path / "out2"))
    assert "Published comparison rows" not in (tmp_path / "out2" / "scores.md").read_text()


def test_every_line_of_the_markdown_fits_120_columns(tmp_path):
    """The short table: model, benchmark, mode, tasks, pass@1 [CI], Δ vs the previous row and vs published, and
    the method once per group as a footnote; only a footnote's URL may overrun 120 columns."""
    files = []
    long_name = "a-very-long-model-name-that-someone-chose-for-their-fine-tune-of-starcoder-15b-v2"
    for model, bench, version in [("base", "humaneval", "v0.1.10"), (long_name, "humaneval", "v0.1.10")]:
        res = _score(model, bench, {"pass@1": 12.5, "pass@10": 30.0}, {"pass@1": 10.0}, n=20, version=version)
        res["evaluator"]["time_limit_policy"] = "per test max(1s, 4 x reference cpu time) " + "x" * 150
        res["not_in_dataset"] = {"count": 1, "task_ids": ["HumanEval/999"]}
        path = tmp_path / model / bench / "sampled.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(res))
        files.append(str(path))
    write_table(
        files, str(tmp_path / "out"), comparison=True, chain=[("base", "base (untuned)"), (long_name, "evolved")]
    )
    md = (tmp_path / "out" / "scores.md").read_text()
    long_lines = [line for line in md.splitlines() if len(line) > 120 and "://" not in line and "x" * 100 not in line]
    assert long_lines == []
    table = [line for line in md.splitlines() if line.startswith("| base |")]
    assert table and "12.5" in table[0] and "[1]" in table[0] and "evolcoder 0.1.0" not in table[0]
    assert md.count("evolcoder 0.1.0 (evalplus-0.3.1)") == 1  # the method once, as a footnote
    assert "a-very-long-model-name" in md and "Δ prev. row" in md and "Δ published" in md
