"""``evolcoder table``: collect score files into results/scores.{md,csv,json,png}.

One row per (model, benchmark, split, mode): pass@1 (and pass@k where n > 1), the published
numbers for that model in their own columns, our difference to the published number that the same
setting (and decoding mode) should reproduce (marked when it differs beyond rounding, with a line on
what differs between the two settings, or that it is not explained), and for every number the
evaluator semantics, dataset version and time-limit policy that produced it.

Every pass@k carries its 95% interval over tasks (:mod:`evolcoder.uncertainty`: Wilson for greedy pass@1,
a seeded bootstrap over tasks for pass@k from n samples), computed from the score file's per-task
verdicts. ``--chain MODEL=ROLE`` (repeatable) orders the rows (e.g. base -> seed only -> evolved) and
compares each chained model with the one before it on the same tasks (exact McNemar for greedy, paired
bootstrap for sampled), with the p-value in the row.

A reproduction (``--match ours=PUBLISHED``, from ``evaluation.models[].reproduces``) is compared with
the published model's numbers. ``--comparison`` adds the papers' rows of other models as a separate,
labelled block (never evaluated here).
"""

from __future__ import annotations

import csv
import logging
import re
from importlib import resources
from pathlib import Path
from typing import Any

import click
import yaml

from evolcoder import uncertainty
from evolcoder.errors import DataError
from evolcoder.io import atomic_path, read_json, write_json

log = logging.getLogger(__name__)


def bench_label(bench: str, split: str = "base", res: dict | None = None) -> str:
    """Display name of a benchmark split: the score file's own labels, else the adapter's."""
    names = (res or {}).get("labels")
    if not names:
        from evolcoder.benchmarks import labels

        names = labels(bench)
    return names.get(split) or names.get("base", bench)


TOLERANCE = 0.05  # published numbers are rounded to 0.1


def load_published(path: str | None = None) -> list[dict]:
    if path:
        p = Path(path)
        if not p.exists():
            raise DataError(f"{path}: published numbers file not found")
        text = p.read_text(encoding="utf-8")
    else:
        text = (resources.files("evolcoder") / "data" / "published.yaml").read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise DataError(f"{path or 'published.yaml'}: not valid YAML ({exc})") from None
    entries = data.get("entries", data if isinstance(data, list) else [])
    for i, e in enumerate(entries):
        missing = {"model", "benchmark", "split", "value"} - set(e)
        if missing:
            raise DataError(f"{path or 'published.yaml'}: entry {i} lacks {', '.join(sorted(missing))}")
    return entries


def _names(e: dict) -> set[str]:
    return {str(n).lower() for n in [e["model"], *(e.get("aliases") or [])]}


def _mode(res: dict, path: str) -> str:
    stem = Path(path).stem
    if stem in ("greedy", "sampled"):
        return stem
    return res.get("mode") or ("greedy" if res.get("n_samples_per_task", 1) == 1 else "sampled")


def task_counts(res: dict, split: str) -> tuple[list[str], list[int], list[int]] | None:
    """(task ids, samples per task, correct per task) of a split, from the score file's per-task
    verdicts; None when the file has none (an old or hand-made score file)."""
    per_task = res.get("per_task")
    if not isinstance(per_task, dict) or not per_task:
        return None
    ids, ns, cs = [], [], []
    for tid, e in per_task.items():
        statuses = e.get(split)
        if statuses is None:
            return None
        ids.append(tid)
        ns.append(int(e.get("n", len(statuses))))
        cs.append(int(e.get(f"{split}_correct", sum(1 for v in statuses if v == "pass"))))
    return ids, ns, cs


def _pct(v: float) -> float:
    return round(100.0 * v, 1)


def intervals(res: dict, split: str) -> dict:
    """``{"pass@k_lo": %, "pass@k_hi": %, ...}`` and ``ci_method`` for every pass@k of the split."""
    counts = task_counts(res, split)
    out: dict[str, Any] = {}
    if counts is None:
        return out
    _ids, ns, cs = counts
    methods = []
    for key in res[split]:
        if not key.startswith("pass@"):
            continue
        k = int(key.split("@")[1])
        if k > min(ns):
            continue
        lo, hi, method = uncertainty.pass_at_k_interval(ns, cs, k)
        out[f"{key}_lo"], out[f"{key}_hi"] = _pct(lo), _pct(hi)
        methods.append(f"{key}: {method}")
    out["ci_method"] = ", ".join(methods)
    return out


def model_name(path: str, res: dict) -> str:
    return str(res.get("model") or Path(path).parent.parent.name)


def build_rows(
    scores: list[tuple[str, dict]],
    published: list[dict],
    matches: dict[str, str] | None = None,
    chain: list[tuple[str, str]] | None = None,
) -> list[dict]:
    """``matches``: our model name -> the published model it reproduces (its numbers are our reference).
    ``chain``: ``[(model, role), ...]``: those rows first, in that order, each compared with the one before."""
    matches = {k.lower(): v for k, v in (matches or {}).items()}
    chain = list(chain or [])
    roles = dict(chain)
    order = {m: i for i, (m, _role) in enumerate(chain)}
    rows = []
    for path, res in scores:
        model = model_name(path, res)
        reproduces = matches.get(model.lower())
        wanted = {model.lower()} | ({reproduces.lower()} if reproduces else set())
        bench = res["benchmark"]
        ev = res.get("evaluator", {})
        ds = res.get("dataset", {})
        mode = _mode(res, path)
        for split in ("base", "plus"):
            if split not in res:
                continue
            label = bench_label(bench, split, res)
            pubs = [
                e
                for e in published
                if e["benchmark"] == bench
                and e["split"] == split
                and wanted & _names(e)
                and e.get("metric", "pass@1") == "pass@1"
            ]
            ours = res[split].get("pass@1")
            ref = next((e for e in pubs if e.get("reference") and e.get("mode", mode) == mode), None)
            delta = None if (ref is None or ours is None) else round(ours - float(ref["value"]), 1)
            row: dict[str, Any] = {
                "model": model,
                "reproduces": reproduces,
                "benchmark": label,
                "benchmark_id": bench,
                "split": split,
                "mode": mode,
                "n": res.get("n_samples_per_task"),
                "n_tasks": res.get("n_tasks"),
                "complete": res.get("complete", True),
                "pass@1": ours,
            }
            if model in roles:
                row["role"] = roles[model]
            for k, v in res[split].items():
                if k.startswith("pass@") and k != "pass@1":
                    row[k] = v
            row.update(intervals(res, split))
            row["published"] = "; ".join(f"{e['value']} ({e.get('mode', '?')}: {e.get('setting', '')})" for e in pubs)
            row["published_reference"] = ref["value"] if ref else None
            row["delta"] = delta
            row["differs"] = bool(delta is not None and abs(ours - float(ref["value"])) > TOLERANCE)
            row["evaluator"] = f"{ev.get('name', '?')} {ev.get('version', '')} ({ev.get('semantics', '?')})"
            row["dataset"] = f"{ds.get('name', bench)} {ds.get('version', '?')} ({str(ds.get('sha256', ''))[:12]})"
            row["time_limit_policy"] = ev.get("time_limit_policy", "")
            row["execution_env"] = _env_summary(res.get("execution_env") or {})
            row["retried"] = len(res.get("retried") or [])
            row["skipped"] = len(res.get("skipped") or [])
            missing = res.get("not_in_dataset") or {}
            row["not_in_dataset"] = missing.get("count", 0)
            row["not_in_dataset_ids"] = " ".join(missing.get("task_ids", []))
            row["uneven_samples"] = bool(res.get("uneven_samples"))
            row["postprocess"] = (res.get("predictions") or {}).get("postprocess", "")
            row["sources"] = "; ".join(f"{e['value']}: {e.get('source', '')}" for e in pubs)
            row["difference_note"] = _difference_note(row, ref) if row["differs"] else ""
            row["score_file"] = str(path)
            row["image_digest"] = (res.get("container") or {}).get("digest") or ""
            rows.append(row)
    rows.sort(
        key=lambda r: (
            order.get(r["model"], len(order)),
            r["model"],
            r["benchmark_id"],
            r["split"] != "base",
            r["mode"],
        )
    )
    add_comparisons(rows, scores, [m for m, _role in chain])
    return rows


def add_comparisons(rows: list[dict], scores: list[tuple[str, dict]], chain: list[str]) -> None:
    """Each row of a chained model (but the first) gets a paired test against the previous model's row
    of the same benchmark, split and mode, over the tasks both were scored on: ``vs``, ``vs_delta``
    (percentage points of pass@1), ``p_value``, ``test``, ``paired_tasks``."""
    by_key = {(model_name(p, r), r["benchmark"], _mode(r, p)): r for p, r in scores}
    for row in rows:
        if row["model"] not in chain or chain.index(row["model"]) == 0:
            continue
        ref_model = chain[chain.index(row["model"]) - 1]
        ours = by_key.get((row["model"], row["benchmark_id"], row["mode"]))
        ref = by_key.get((ref_model, row["benchmark_id"], row["mode"]))
        row["vs"] = ref_model
        if ours is None or ref is None:
            continue
        a, b = task_counts(ours, row["split"]), task_counts(ref, row["split"])
        if a is None or b is None:
            continue
        cb = dict(zip(b[0], zip(b[1], b[2], strict=True), strict=True))
        common = [(n, c, *cb[t]) for t, n, c in zip(*a, strict=True) if t in cb]
        if not common:
            continue
        ns_a, cs_a, ns_b, cs_b = (list(x) for x in zip(*common, strict=True))
        test = uncertainty.compare(ns_a, cs_a, ns_b, cs_b, k=1)
        row["vs_delta"] = _pct(test["difference"])
        row["p_value"] = round(test["p_value"], 4)
        row["test"] = test["test"]
        row["paired_tasks"] = test["n_tasks"]


def _difference_note(row: dict, ref: dict) -> str:
    """One line on what differs between the published setting and ours, or that it is not explained."""
    ours = f"ours: {row['dataset']}, {row['evaluator']}"
    if ref.get("note"):
        return f"{ref['note']} ({ours})"
    return f"not explained: published {ref['value']} ({ref.get('setting', '?')}); {ours}"


def _env_summary(env: dict) -> str:
    """Where the programs ran, for benchmarks with pinned libraries (DS-1000): pins kept or not."""
    if "pins_match" not in env:
        return ""
    if env["pins_match"]:
        return f"official library pins (python {env.get('python', '?')})"
    return "⚠ not the official library pins: " + ", ".join(
        f"{m} {d.get('have') or 'missing'} (pin {d.get('want')})" for m, d in (env.get("mismatches") or {}).items()
    )


def _with_ci(r: dict, key: str) -> str:
    v = r.get(key)
    if v is None:
        return "-"
    lo, hi = r.get(f"{key}_lo"), r.get(f"{key}_hi")
    return _fmt(v) + ("" if lo is None else f" [{lo:.1f}, {hi:.1f}]")


def _vs(r: dict) -> str:
    if not r.get("vs"):
        return ""
    if r.get("p_value") is None:
        return f"vs {r['vs']}: no paired tasks"
    test = "McNemar" if r["test"] == "mcnemar-exact" else "paired bootstrap"
    return f"{r['vs_delta']:+.1f} vs {r['vs']} (p = {_fmt_p(r['p_value'])}, {test}, {r['paired_tasks']} tasks)"


def _vs_short(r: dict) -> str:
    """The table cell of the paired comparison with the previous row (the full line is a footnote)."""
    if not r.get("vs"):
        return ""
    if r.get("p_value") is None:
        return "n/a"
    return f"{r['vs_delta']:+.1f} (p {_fmt_p(r['p_value'])})"


def _fmt_p(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else "< 0.001"


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.1f}"
    return str(v)


WIDTH = 120  # every line of scores.md fits a terminal / PR comment; only a footnote's URL may overrun


def _wrap(text: str, indent: str = "  ") -> list[str]:
    """A footnote as lines of at most WIDTH (a markdown list item: continuation lines indented)."""
    import textwrap

    return textwrap.wrap(text, WIDTH, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False) or [""]


def _method(r: dict) -> str:
    """Everything about how a number was obtained that is the same for a whole group of rows."""
    parts = [f"evaluator {r['evaluator']}", f"dataset {r['dataset']}"]
    if r.get("time_limit_policy"):
        parts.append(f"time limits: {r['time_limit_policy']}")
    if r.get("postprocess"):
        parts.append(f"post-processing: {r['postprocess']}")
    if r.get("execution_env"):
        parts.append(f"environment: {r['execution_env']}")
    return "; ".join(parts)


def _table(head: list[str], body: list[list[str]], shrink: int = 0) -> list[str]:
    """Markdown table lines; cells cut (with …) in column ``shrink`` where a line would pass WIDTH."""
    clean = [[str(c).replace("|", "/") for c in row] for row in body]

    def line(cells):
        return "| " + " | ".join(cells) + " |"

    out = [line(head), "|" + "---|" * len(head)]
    for cells in clean:
        over = len(line(cells)) - WIDTH
        if over > 0 and len(cells[shrink]) > over + 1:
            cells = [*cells[:shrink], cells[shrink][: len(cells[shrink]) - over - 1] + "…", *cells[shrink + 1 :]]
        out.append(line(cells))
    return out


def to_markdown(rows: list[dict], comparison: list[dict] | None = None) -> str:
    """The short table (one line per number, each <= WIDTH), the method once per group as a footnote, then
    the notes. Every field stays in scores.csv / scores.json."""
    chained = any(r.get("role") for r in rows)
    ks = sorted(
        {k for r in rows for k in r if re.fullmatch(r"pass@\d+", k) and k != "pass@1"},
        key=lambda k: int(k.split("@")[1]),
    )
    methods: dict[str, int] = {}
    for r in rows:
        methods.setdefault(_method(r), len(methods) + 1)
    head = [
        "model",
        "benchmark",
        "mode",
        "tasks",
        "pass@1 [95% CI]",
        *ks,
        *(["Δ prev. row"] if chained else []),
        "Δ published",
        "method",
    ]
    body = []
    for r in rows:
        delta = "-" if r["delta"] is None else (f"**{r['delta']:+.1f}** ⚠" if r["differs"] else f"{r['delta']:+.1f}")
        tasks = (
            f"{r['n_tasks']}"
            + ("" if r["complete"] else " (subset)")
            + (f", {r['skipped']} skipped" if r.get("skipped") else "")
            + (", uneven n" if r.get("uneven_samples") else "")
        )
        mode = r["mode"] + (f" n={r['n']}" if r["mode"] == "sampled" and r.get("n") else "")
        body.append(
            [
                r["model"],
                r["benchmark"],
                mode,
                tasks,
                _with_ci(r, "pass@1"),
                *[_with_ci(r, k) for k in ks],
                *([_vs_short(r) or "-"] if chained else []),
                delta,
                f"[{methods[_method(r)]}]",
            ]
        )
    lines = _table(head, body)
    notes = ["", "Method of each row (dataset: version, sha256 prefix; every field of every number: scores.csv/json):"]
    for text, i in methods.items():
        notes += _wrap(f"- [{i}] {text}")
    notes += [""]
    notes += _wrap(
        "[95% CI]: over tasks (Wilson for greedy pass@1, a seeded bootstrap over tasks for pass@k from n "
        "samples); with a few hundred tasks or fewer, differences inside them are mostly noise."
    )
    roles = {r["model"]: r["role"] for r in rows if r.get("role")}
    reproduces = {r["model"]: r["reproduces"] for r in rows if r.get("reproduces")}
    if reproduces:
        notes.append("Reproductions (Δ published is against the reproduced model's number):")
        for m, ref in reproduces.items():
            notes += _wrap(f"- {m} (reproduces {ref})")
    if chained:
        notes += _wrap(
            "Δ prev. row: difference in pass@1 (points) to the row above in the chain, on the tasks both were "
            "scored on, with a paired test (exact McNemar on the tasks one passed and the other not for greedy; "
            "paired bootstrap over tasks for sampled):"
        )
        notes += _wrap("- chain: " + " → ".join(f"{m} — {role}" for m, role in roles.items()))
        for r in rows:
            if r.get("vs"):
                notes += _wrap(f"- {r['model']} {r['benchmark']} ({r['mode']}): {_vs(r)}")
    notes += _wrap(
        "Δ published: our pass@1 minus the published number that the same setting (and decoding mode) should "
        "reproduce; ⚠ marks a difference beyond rounding (0.05)."
    )
    diffs = [r for r in rows if r.get("difference_note")]
    if diffs:
        notes.append("What differs where Δ is marked:")
        for r in diffs:
            notes += _wrap(f"- {r['model']} {r['benchmark']} ({r['mode']}): {r['difference_note']}")
    skipped = {(r["model"], r["benchmark_id"]): r for r in rows if r.get("not_in_dataset") and r["split"] == "base"}
    for r in skipped.values():
        notes += _wrap(
            f"- {r['model']} {bench_label(r['benchmark_id'])}: {r['not_in_dataset']} ids not in dataset skipped "
            f"(predicted task ids the dataset lacks): {r['not_in_dataset_ids']}"
        )
    notes.append("Published numbers and their sources:")
    seen = set()
    for r in rows:
        if r["published"] and (r["published"], r["sources"]) not in seen:
            seen.add((r["published"], r["sources"]))
            notes += _wrap(f"- {r['model']} {r['benchmark']}: {r['published']}. Sources: {r['sources']}")
    if comparison:
        notes += [
            "",
            "### Published comparison rows (other models, as printed in the papers; not evaluated here)",
            "",
        ]
        settings: dict[tuple[str, str], int] = {}
        comp_body = []
        for e in comparison:
            key = (e.get("setting", ""), e.get("source", ""))
            settings.setdefault(key, len(settings) + 1)
            comp_body.append(
                [
                    e["model"],
                    bench_label(e["benchmark"], e["split"]),
                    _fmt(float(e["value"])),
                    e.get("mode", "?"),
                    f"[s{settings[key]}]",
                ]
            )
        notes += _table(["model", "benchmark", "pass@1", "mode", "setting, source"], comp_body)
        notes.append("")
        for (setting, source), i in settings.items():
            notes += _wrap(f"- [s{i}] {setting}. Source: {source}")
    return "\n".join(lines + notes) + "\n"


def error_bars(rows: list[dict], key: str = "pass@1") -> list[list[float]]:
    """Matplotlib's asymmetric ``yerr`` from the rows' intervals (0 where a row has none)."""
    lower, upper = [], []
    for r in rows:
        v, lo, hi = r.get(key), r.get(f"{key}_lo"), r.get(f"{key}_hi")
        ok = None not in (v, lo, hi)
        lower.append(max(0.0, v - lo) if ok else 0.0)
        upper.append(max(0.0, hi - v) if ok else 0.0)
    return [lower, upper]


def write_chart(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['model']}\n{r['benchmark']} ({r['mode']})" for r in rows]
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(rows) + 2), 4.5))
    xs = range(len(rows))
    ax.bar(
        [x - 0.2 for x in xs],
        [r["pass@1"] or 0 for r in rows],
        width=0.4,
        yerr=error_bars(rows),
        capsize=3,
        label="ours (pass@1, 95% CI)",
    )
    ax.bar(
        [x + 0.2 for x in xs], [r["published_reference"] or 0 for r in rows], width=0.4, label="published", alpha=0.6
    )
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("pass@1 (%)")
    ax.set_ylim(0, 100)
    ax.legend()
    save_png(fig, path)


def save_png(fig, path: Path) -> None:
    """Write a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def read_score_files(paths: list[str]) -> list[tuple[str, dict]]:
    """(path, score file) of each path; a DataError naming the first that is not a score file."""
    scores = []
    for f in paths:
        res = read_json(f)
        if not isinstance(res, dict) or "benchmark" not in res or "base" not in res:
            raise DataError(f"{f}: not a score file (no benchmark/base)")
        scores.append((f, res))
    return scores


def write_table(
    score_files: list[str],
    out_dir: str,
    published: str | None = None,
    matches: dict[str, str] | None = None,
    comparison: bool = False,
    chain: list[tuple[str, str]] | None = None,
) -> list[dict]:
    scores = read_score_files(score_files)
    entries = load_published(published)
    rows = build_rows(scores, entries, matches, chain)
    comp = [e for e in entries if e.get("comparison")] if comparison else []
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "scores.md") as tmp:
        tmp.write_text(to_markdown(rows, comp), encoding="utf-8")
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_path(out / "scores.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    write_json(out / "scores.json", {"rows": rows, "published_comparison": comp})
    write_chart(rows, out / "scores.png")
    return rows


def parse_pairs(values: tuple[str, ...], option: str, form: str) -> list[tuple[str, str]]:
    out = []
    for m in values:
        if "=" not in m:
            raise DataError(f"{option} {m!r}: expected {form}")
        a, b = m.split("=", 1)
        out.append((a.strip(), b.strip()))
    return out


@click.command(help="Collect score files into results tables (md/csv/json) and a bar chart.")
@click.option("--out-dir", required=True, help="Folder for scores.{md,csv,json,png}.")
@click.option("--published", default=None, help="YAML of published numbers (default: bundled).")
@click.option(
    "--match",
    "match",
    multiple=True,
    metavar="OURS=PUBLISHED",
    help="Our model OURS reproduces the published model PUBLISHED: compare with its numbers (repeatable).",
)
@click.option(
    "--comparison/--no-comparison",
    default=False,
    show_default=True,
    help="Add the papers' rows of other models as a separate block.",
)
@click.option(
    "--chain",
    "chain",
    multiple=True,
    metavar="MODEL=ROLE",
    help="Rows of MODEL first, labelled ROLE, in the order given; each compared with the previous (repeatable).",
)
@click.argument("scores", nargs=-1, required=True)
def cli(
    out_dir: str,
    published: str | None,
    match: tuple[str, ...],
    comparison: bool,
    chain: tuple[str, ...],
    scores: tuple[str, ...],
) -> None:
    matches = dict(parse_pairs(match, "--match", "OURS=PUBLISHED"))
    rows = write_table(
        list(scores), out_dir, published, matches, comparison, parse_pairs(chain, "--chain", "MODEL=ROLE")
    )
    click.echo(f"{len(rows)} rows -> {out_dir}/scores.md")
