"""Every command the README and docs/ show is a real one: the make target exists and expands to
module invocations whose arguments their parsers accept (parsed only, nothing run).

What the commands do is tested elsewhere (pipeline, trainer, verify, inspection tests) and by
`make demo`; this test catches the drift between the docs and the code: a renamed option, a
removed target, a module that moved.
"""

import argparse
import importlib
import re
import runpy
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"^\s*(make |python -m |python bench/|torchrun )")


def documented_commands() -> list[tuple[str, str]]:
    """(doc file name, command) for each command line inside the docs' fenced code blocks."""
    found = []
    for doc in DOCS:
        fenced = False
        for line in doc.read_text().splitlines():
            if line.lstrip().startswith("```"):
                fenced = not fenced
            elif fenced and COMMAND.match(line):
                command = line.split(" #")[0].strip()
                command = re.sub(r"\s*\[[^\]]*\]", "", command)  # optional parts: [FOLD=1|all]
                found.append((doc.name, command.replace("…", "x")))
    return found


class _Parsed(Exception):
    pass


def _parse_only(self, args=None, namespace=None):
    """ArgumentParser.parse_args that stops after parsing and refuses unknown arguments."""
    namespace, extra = self.parse_known_args(args, namespace)
    if extra:
        self.error(f"unrecognized arguments: {' '.join(extra)}")
    raise _Parsed(namespace)


def check_invocation(argv: list[str], monkeypatch) -> None:
    """`python -m module args` or `python script.py args`: the parser accepts the arguments."""
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", _parse_only)
    if argv[0] == "-m":
        module = importlib.import_module(argv[1])
        if not hasattr(module, "main"):   # a package run as `python -m package`
            module = importlib.import_module(argv[1] + ".__main__")
        target = lambda: module.main(argv[2:])  # noqa: E731
    else:
        monkeypatch.setattr(sys, "argv", argv)
        monkeypatch.syspath_prepend(str((ROOT / argv[0]).parent))  # as `python bench/x.py` would
        target = lambda: runpy.run_path(str(ROOT / argv[0]), run_name="__main__")  # noqa: E731
    try:
        target()
    except _Parsed:
        return
    except SystemExit as stop:
        assert stop.code == 0, f"{' '.join(argv)}: arguments refused (exit {stop.code})"
        return
    pytest.fail(f"{' '.join(argv)} did not parse its arguments through argparse")


def python_invocations(recipe: str) -> list[list[str]]:
    """The `python -m …` / `python bench/….py …` lines a `make -n` printed."""
    calls = []
    for line in recipe.replace("\\\n", " ").splitlines():
        words = shlex.split(line) if "python" in line else []
        for i, word in enumerate(words):
            if word.endswith(("/python", "python")) and i + 1 < len(words):
                rest = words[i + 1:]
                if rest[0] == "-m" and rest[1] not in ("pytest", "venv", "pip"):
                    calls.append(rest)
                elif rest[0].endswith(".py"):
                    calls.append(rest)
                break
    return calls


COMMANDS = documented_commands()


def test_the_docs_show_commands():
    assert len(COMMANDS) > 20
    assert {"README.md", "pipeline.md", "training.md", "benchmarks.md"} <= {doc for doc, _ in COMMANDS}


@pytest.mark.parametrize("doc,command", COMMANDS, ids=[f"{d}:{c[:60]}" for d, c in COMMANDS])
def test_documented_command(doc, command, monkeypatch):
    words = shlex.split(command)
    if words[0] == "make":
        dry = subprocess.run(["make", "-n", *words[1:]], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert dry.returncode == 0, f"{doc}: `{command}`: {dry.stderr.strip()}"
        for argv in python_invocations(dry.stdout):
            check_invocation(argv, monkeypatch)
    elif words[0] == "torchrun":
        module = words.index("-m")
        check_invocation(words[module:], monkeypatch)
    else:
        check_invocation(words[1:], monkeypatch)
