"""docs/ARCHITECTURE.md's generated parts (the rerun table, the stage CLIs) say what the code does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_rerun_table_and_the_stage_clis_are_up_to_date():
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "architecture_doc.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_the_rerun_table_says_what_an_edit_reruns():
    text = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    table = text.split("<!-- rerun-table:", 1)[1].split("<!-- /rerun-table -->", 1)[0]
    rules = {}  # file -> the rules column
    for line in table.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if line.startswith("| `"):
            rules.update(dict.fromkeys(cells[1].split(", "), cells[3]))
    assert rules["`train/plot.py`"] == "training_plot"
    # the scorer: generation and merge import it through the adapters but never run it
    assert rules["`benchmarks/harness.py`"] == "score, timings, table, ablation_table"
