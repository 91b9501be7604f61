"""The generated parts of docs/ARCHITECTURE.md: what reruns when you edit a file, and the stage CLIs.

    python scripts/architecture_doc.py           # rewrite the two blocks in place
    python scripts/architecture_doc.py --check   # exit 1 when the document and the code disagree (the tests)

The rerun table comes from :func:`evolcoder.codehash.stage_files` (the files behind each command's code hash)
and the rules' ``code_version("<command>")`` params; the CLI list from the click commands themselves.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "evolcoder"
DOC = REPO / "docs" / "ARCHITECTURE.md"
sys.path.insert(0, str(REPO / "src"))

from evolcoder import codehash  # noqa: E402

BLOCKS = ("rerun-table", "stage-clis")
WIDTH = 118
RULE = re.compile(r"^(?:rule|checkpoint) (\w+):\n(.*?)(?=^(?:rule|checkpoint) |\Z)", re.S | re.M)
HEADER = "| you edit (in `src/evolcoder/`) | the code hash of | rules that rerun (then what reads their outputs) |"


def rules_of_commands(repo: Path = REPO) -> dict[str, list[str]]:
    """command -> the rules whose code hash is ``code_version("<command>")``."""
    out: dict[str, list[str]] = defaultdict(list)
    for smk in sorted((repo / "rules").glob("*.smk")):
        for rule, body in RULE.findall(smk.read_text()):
            for command in re.findall(r'code_version\("([^"]+)"\)', body):
                out[command].append(rule)
    return out


def _where(rel: str) -> str:
    """The folder a file is listed under: its own, or for package data the data folder (templates/eval)."""
    parts = rel.split("/")
    if parts[0] == "templates":
        return "/".join(parts[:2])
    return "/".join(parts[:-1])


def rerun_table(root: Path = SRC, repo: Path = REPO) -> str:
    commands = codehash.commands(root)
    cover: dict[str, set[str]] = defaultdict(set)
    for command in commands:
        for f in codehash.stage_files(root, command):
            cover[f.relative_to(root).as_posix()].add(command)
    files = sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )
    groups: dict[tuple[str, tuple[str, ...]], list[str]] = defaultdict(list)
    for rel in files:
        groups[(_where(rel), tuple(c for c in commands if c in cover.get(rel, ())))].append(rel)
    per_folder = defaultdict(int)
    for where, _ in groups:
        per_folder[where] += 1
    rules = rules_of_commands(repo)
    every_rule = set(r for rs in rules.values() for r in rs)
    rows = [
        HEADER,
        "|---|---|---|",
    ]
    for (where, cmds), rels in sorted(groups.items(), key=lambda kv: (-len(kv[0][1]), kv[0])):
        if per_folder[where] == 1 and where.startswith("templates/"):
            edit = f"`{where}/` (any file)"
        else:
            prefix = f"{where}/" if where else ""
            edit = ", ".join(f"`{prefix}{r[len(prefix) :]}`" for r in rels)
        if not cmds:
            hashed, stale = "nothing", "none"
        else:
            hashed = "every command" if len(cmds) == len(commands) else ", ".join(f"`{c}`" for c in cmds)
            stale_rules = list(dict.fromkeys(r for c in cmds for r in rules.get(c, [])))
            stale = ", ".join(stale_rules) or "none (no rule runs it)"
            stale = "every rule" if set(stale_rules) == every_rule else stale
        rows.append(f"| {edit} | {hashed} | {stale} |")
    return "\n".join(rows)


def _synopsis(name: str, cmd) -> str:
    """``evolcoder NAME --opt VALUE [--optional VALUE] ARG …``, wrapped between options at WIDTH."""
    import click

    words = [f"evolcoder {name}"]
    for p in cmd.params:
        if isinstance(p, click.Argument):
            word = p.human_readable_name.upper() + (" …" if p.nargs == -1 else "")
            words.append(word if p.required else f"[{word}]")
            continue
        if not isinstance(p, click.Option) or "--help" in p.opts:
            continue
        longs = [o for o in [*p.opts, *p.secondary_opts] if o.startswith("--")]
        if p.is_flag:
            word = "|".join(longs)
        elif isinstance(p.type, click.Choice):
            word = f"{longs[0]} {'|'.join(p.type.choices)}"
        else:
            word = f"{longs[0]} {p.metavar or longs[0][2:].upper().replace('-', '_')}"
        word += " …" if getattr(p, "multiple", False) else ""
        words.append(word if p.required else f"[{word}]")
    lines = [words[0]]
    for word in words[1:]:
        if len(lines[-1]) + 1 + len(word) + 2 > WIDTH:
            lines[-1] += " \\"
            lines.append("    " + word)
        else:
            lines[-1] += " " + word
    return "\n".join(lines)


def stage_clis() -> str:
    import click

    from evolcoder.cli import COMMANDS, group

    ctx = click.Context(group)
    lines = ["```"]
    for name, (_, help_) in COMMANDS.items():
        lines += [f"# {help_}", _synopsis(name, group.get_command(ctx, name))]
    return "\n".join([*lines, "```"])


def render(text: str) -> str:
    """``text`` with each generated block between its ``<!-- name: generated ... -->`` / ``<!-- /name -->``
    markers replaced by what the code says."""
    for name, make in zip(BLOCKS, (rerun_table, stage_clis), strict=True):
        pattern = re.compile(rf"(<!-- {name}: generated[^\n]*-->\n)(?:.*?\n)?(<!-- /{name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"{DOC}: no <!-- {name}: generated ... --> ... <!-- /{name} --> block")
        body = make()
        text = pattern.sub(lambda m, body=body: m.group(1) + body + "\n" + m.group(2), text)
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="Exit 1 when the document is out of date.")
    args = ap.parse_args()
    text = DOC.read_text(encoding="utf-8")
    new = render(text)
    if args.check:
        if new != text:
            print(f"{DOC.relative_to(REPO)} is out of date: run python scripts/architecture_doc.py", file=sys.stderr)
            sys.exit(1)
        return
    if new != text:
        DOC.write_text(new, encoding="utf-8")
        print(f"updated {DOC.relative_to(REPO)}")


if __name__ == "__main__":
    main()
