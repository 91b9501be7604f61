import json
import subprocess
import sys

import pytest

from evolcoder.errors import DataError
from evolcoder.io import read_jsonl
from evolcoder.seed import build_seed, normalise, seed_id


def test_builtin_seed_has_at_least_30_code_items():
    records, stats = build_seed("builtin")
    assert len(records) >= 30
    assert stats["duplicates_dropped"] == 0
    assert all(r["round"] == 0 and r["method"] == "seed" and r["parent_id"] is None for r in records)
    assert len({r["id"] for r in records}) == len(records)


def test_ids_are_stable_and_content_addressed():
    a = normalise({"instruction": "Sum a list.", "input": "", "output": "sum(x)"}, "t")
    b = normalise({"instruction": " Sum a list. ", "output": "other"}, "t")
    assert a["id"] == b["id"] == seed_id("Sum a list.", "")
    assert a["root_id"] == a["id"]


def test_code_alpaca_subset_is_seeded(shared_data):
    src = str(shared_data / "seeds" / "code_alpaca_2k.json")
    r1, _ = build_seed(src, limit=10, sample_seed=1)
    r2, _ = build_seed(src, limit=10, sample_seed=1)
    r3, _ = build_seed(src, limit=10, sample_seed=2)
    assert [r["id"] for r in r1] == [r["id"] for r in r2]
    assert [r["id"] for r in r1] != [r["id"] for r in r3]


def test_jsonl_and_aliases(tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_text(json.dumps({"prompt": "Reverse a string.", "response": "s[::-1]"}) + "\n")
    records, _ = build_seed(str(p))
    assert records[0]["instruction"] == "Reverse a string." and records[0]["output"] == "s[::-1]"


@pytest.mark.parametrize(
    "content, message",
    [
        ('[{"instruction": "x", ', "not valid JSON"),
        ('[{"input": "x", "output": "y"}]', "item 0: missing field 'instruction'"),
        ('[{"instruction": 3, "output": "y"}]', "field 'instruction' must be a string"),
        ('{"a": 1}', "expected a JSON list"),
        ("[]", "no instruction records"),
    ],
)
def test_malformed_seed_is_one_clear_error(tmp_path, content, message):
    p = tmp_path / "seed.json"
    p.write_text(content)
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        build_seed(str(p))


def test_cli_one_line_error_and_no_output(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('[{"instruction": "x"}]')
    out = tmp_path / "seed.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "evolcoder.cli", "seed", "--source", str(bad), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "missing field 'output'" in proc.stderr
    assert not out.exists()


def test_missing_file_falls_back_to_builtin_only_when_asked(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        build_seed(str(tmp_path / "nope.json"))
    records, stats = build_seed(str(tmp_path / "nope.json"), fallback_builtin=True)
    assert stats["source"] == "builtin" and len(records) >= 30


def test_cli_writes_records_and_manifest(tmp_path):
    out = tmp_path / "seed" / "seed.jsonl"
    subprocess.run(
        [sys.executable, "-m", "evolcoder.cli", "seed", "--source", "builtin", "--limit", "5", "--out", str(out)],
        check=True,
        capture_output=True,
    )
    assert len(read_jsonl(out)) == 5
    manifest = json.loads((out.parent / "manifest.json").read_text())
    assert manifest["stage"] == "seed" and manifest["settings"]["limit"] == 5
