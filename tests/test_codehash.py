"""evolcoder.codehash on a tiny package: what a command's code hash takes in, and what it leaves out."""

from __future__ import annotations

import textwrap
from pathlib import Path

from evolcoder import codehash

FILES = {
    "cli.py": """
        COMMANDS = {
            "fit": ("evolcoder.fit.commands:fit_cli", "Fit."),
            "plot": ("evolcoder.fit.plot:cli", "Plot."),
            "score": ("evolcoder.score:cli", "Score."),
        }
    """,
    "__init__.py": "",
    "io.py": "def read(): ...\n",
    "fit/__init__.py": '"""A package that imports nothing."""\n',
    "fit/commands.py": """
        from evolcoder.io import read

        def fit_cli():
            from evolcoder.fit import engine
            engine.run()

        def unused():
            from evolcoder import heavy
    """,
    "fit/engine.py": """
        from importlib import resources

        def run():
            from evolcoder.fit.plot import draw
            return resources.files("evolcoder") / "templates" / "fit.txt"

        def other():
            from evolcoder import heavy
    """,
    "fit/plot.py": """
        def draw(): ...

        def cli():
            draw()
    """,
    "heavy.py": "",
    "registry.py": 'ADAPTERS = {"a": "evolcoder.adapters:A"}\n',
    "adapters.py": """
        class A:
            def check(self):
                from evolcoder import heavy

        def not_named():
            from evolcoder.fit import engine
    """,
    "score.py": """
        from evolcoder.registry import ADAPTERS

        def cli(): ...
    """,
    "templates/fit.txt": "{x}\n",
}


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "evolcoder"
    for rel, text in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))
    return root


def _files(root: Path, command: str) -> set[str]:
    return {p.relative_to(root).as_posix() for p in codehash.stage_files(root, command)}


def test_a_command_takes_in_what_its_function_reaches_not_its_package(tmp_path):
    root = _tree(tmp_path)
    assert _files(root, "fit") == {
        "__init__.py",
        "io.py",  # a module-level import of the command's module
        "fit/__init__.py",  # parent packages run on import
        "fit/commands.py",
        "fit/engine.py",  # a lazy import in the command
        "fit/plot.py",  # a lazy import in a function the command calls
        "templates/fit.txt",  # package data it reads
    }  # not heavy.py: only functions the command never calls import it
    assert _files(root, "plot") == {"__init__.py", "fit/__init__.py", "fit/plot.py"}


def test_a_registry_string_brings_in_its_class_with_all_methods(tmp_path):
    root = _tree(tmp_path)
    assert _files(root, "score") == {"__init__.py", "score.py", "registry.py", "adapters.py", "heavy.py"}


def test_editing_a_function_the_command_never_calls_changes_no_other_hash(tmp_path):
    root = _tree(tmp_path)
    before = {c: codehash.stage_hash(root, c) for c in ("fit", "plot", "score")}
    (root / "heavy.py").write_text("X = 1\n")
    after = {c: codehash.stage_hash(root, c) for c in ("fit", "plot", "score")}
    assert [c for c in before if before[c] != after[c]] == ["score"]
