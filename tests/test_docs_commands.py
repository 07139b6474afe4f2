"""The README and docs/ run as written: every shell block's commands are real, every repository
path and module they name exists, and the terms a newcomer may not know link to the glossary.

Every line of every ```bash block is checked, with the environment active as the README says
(`source .venv/bin/activate`): a `make` target expands (`make -n`, the variables given) to
module invocations whose arguments their parsers accept; `python -m X …`, `python script.py …`
and `torchrun … -m X …` parse their arguments (parsed only, nothing run); `python -c` code
compiles and its imports exist; any other program is found on the PATH or in `.venv/bin`; a
path into the repository (`bench/…`, `environment.yml`) exists. Every fenced block names its
language, so no command hides in a block this test skips. Code spans in the prose that name a
repository file (`pipeline/shards/format.py`) or a module (`pipeline.resources.data_dir`) must
exist too.

What the commands do is tested elsewhere (pipeline, trainer, verify, inspection tests) and by
`make demo`; this test catches the drift between the docs and the code: a renamed option, a
removed target, a module that moved.
"""

import argparse
import importlib
import importlib.util
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
GLOSSARY = ROOT / "docs" / "glossary.md"
SHELL = ("bash", "sh", "shell")
BUILTINS = ("export", "cd", "source", "echo")
# Tracked top-level entries: a command or code span naming a path inside one of them names a file
# of the repository, which must exist (data/, shards/, runs/ and exports/ are outputs, not checked).
TRACKED_TOP = {line.split("/")[0] for line in subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True,
                                                               text=True, check=True).stdout.splitlines()}
# Files our programs write that the docs name before any run made them: bench/gpu_check.py on a GPU.
OUTPUTS = {"bench/results/gpu_check.json", "bench/results/gpu_describe.json",   # written by a GPU run
           "bench/results/sample_accuracy.json"}                                  # written by make bench
# Abbreviations linked to the glossary where each page first uses them.
ABBREVIATIONS = ("UAR", "WAR", "NME", "IOD", "PSNR", "AU", "FACS", "HOG", "S3FD", "FAN", "MJPEG", "CRF", "TSN", "DDP")


def fenced_blocks(doc: Path) -> list[tuple[str, int, list[str]]]:
    """(language, line number of the opening fence, lines) of each fenced block."""
    blocks, current = [], None
    for number, line in enumerate(doc.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            if current is None:
                current = (line.lstrip()[3:].strip(), number, [])
            else:
                blocks.append(current)
                current = None
        elif current is not None:
            current[2].append(line)
    assert current is None, f"{doc.name}: a fence opened on line {current[1]} is never closed"
    return blocks


def without_comment(line: str) -> str:
    """The line up to a `#` that starts a shell comment (not one inside quotes or a word)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].strip()
    return line.strip()


def documented_commands() -> list[tuple[str, str]]:
    """(doc file name:line, command) for each command line of the docs' shell blocks."""
    found = []
    for doc in DOCS:
        for language, start, lines in fenced_blocks(doc):
            if language not in SHELL:
                continue
            joined = "\n".join(lines).replace("\\\n", " ")
            for offset, line in enumerate(joined.splitlines(), 1):
                command = re.sub(r"\s*\[[^\]]*\]", "", without_comment(line))   # optional parts: [FOLD=1|all]
                if command:
                    found.append((f"{doc.name}:{start + offset}", command.replace("…", "x")))
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
    if argv[0] == "-c":
        code = compile(argv[1], "<python -c>", "exec")
        for name in re.findall(r"(?:^|;|\n)\s*(?:import|from)\s+([\w.]+)", argv[1]):
            assert importlib.util.find_spec(name.split(".")[0]) is not None, f"python -c imports {name}, not installed"
        assert code is not None
        return
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", _parse_only)
    if argv[0] == "-m":
        module = importlib.import_module(argv[1])
        if not hasattr(module, "main"):   # a package run as `python -m package`
            module = importlib.import_module(argv[1] + ".__main__")
        target = lambda: module.main(argv[2:])  # noqa: E731
    else:
        assert (ROOT / argv[0]).is_file(), f"{argv[0]} does not exist"
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


def repository_path(word: str) -> str | None:
    """`word` (or the value of VAR=value / --opt=value) when it names a path inside the repository."""
    value = word.split("=", 1)[1] if re.match(r"^(--)?[A-Za-z_][\w-]*=", word) else word
    if value.startswith(("/", "~", ".venv")) or "://" in value:
        return None
    first = value.split("/")[0]
    return value if first in TRACKED_TOP and (("/" in value) or (ROOT / first).is_file()) else None


def path_exists(path: str) -> bool:
    """A repository path, with `{…}`, `<…>` and `*` as wildcards; `file.py.name` or `file.name`
    (a function or class of a module, as docs write it) counts when the module defines it."""
    path = path.split("::")[0].rstrip("/.,")
    if path in OUTPUTS:
        return True
    pattern = re.sub(r"\{[^}]*\}|<[^>]*>", "*", path)
    if "*" in pattern:
        return any(ROOT.glob(pattern))
    if (ROOT / path).exists():
        return True
    module, _, name = path.rpartition(".")
    source = ROOT / (module if module.endswith(".py") else module + ".py")
    return bool(module) and source.is_file() and re.search(
        rf"^\s*(?:def|class)\s+{re.escape(name)}\b|^{re.escape(name)}\s*[:=]", source.read_text(), re.M) is not None


COMMANDS = documented_commands()


def test_the_docs_show_commands_in_shell_blocks_that_name_their_language():
    assert len(COMMANDS) > 40
    assert {"README.md", "pipeline.md", "training.md", "benchmarks.md", "interop.md"} <= \
        {where.split(":")[0] for where, _ in COMMANDS}
    unnamed = [f"{doc.name}:{start}" for doc in DOCS for language, start, _ in fenced_blocks(doc) if not language]
    assert unnamed == [], "fenced blocks without a language (bash, python, text, …)"


def test_readme_says_how_to_activate_the_environment_before_any_python_command():
    commands = [command for where, command in COMMANDS if where.startswith("README.md")]
    activate = commands.index("source .venv/bin/activate")
    assert not any(re.match(r"^(python|torchrun)\b", c) for c in commands[:activate])
    assert sum(c == "source .venv/bin/activate" for where, c in COMMANDS) == 1, "say it once, in the README"


@pytest.mark.parametrize("where,command", COMMANDS, ids=[f"{w}:{c[:50]}" for w, c in COMMANDS])
def test_documented_command(where, command, monkeypatch):
    words = shlex.split(command, comments=True)
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):   # VAR=value make …
        words = words[1:]
    for word in words:
        if (path := repository_path(word)) is not None:
            assert path_exists(path), f"{where}: `{command}` names {path}, which does not exist"
    program = words[0]
    if program == "make":
        dry = subprocess.run(["make", "-n", *words[1:]], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert dry.returncode == 0, f"{where}: `{command}`: {dry.stderr.strip()}"
        for argv in python_invocations(dry.stdout):
            check_invocation(argv, monkeypatch)
    elif program == "torchrun":
        check_invocation(words[words.index("-m"):], monkeypatch)
    elif program in ("python", "python3"):
        check_invocation(words[1:], monkeypatch)
    elif program == "source":
        assert words[1] == ".venv/bin/activate", f"{where}: `{command}`"
    elif program not in BUILTINS:
        found = shutil.which(program, path=f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
        assert found, f"{where}: `{command}`: no program {program!r} in .venv/bin or on the PATH"


# --- the prose ---------------------------------------------------------------------------------

def prose(doc: Path) -> str:
    """The page without its fenced blocks (their lines blanked, so offsets keep their lines)."""
    lines, fenced = [], False
    for line in doc.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            lines.append("")
        else:
            lines.append("" if fenced else line)
    return "\n".join(lines)


CODE_SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\[([^\]\n]*)\]\(([^)\s]*)\)")


def code_spans() -> list[tuple[str, str]]:
    return [(doc.name, span) for doc in DOCS for span in CODE_SPAN.findall(doc.read_text())]


def test_paths_the_docs_name_exist_and_none_lies_outside_the_repository():
    missing = [f"{doc}: `{span}`" for doc, span in code_spans()
               if (path := repository_path(span.split()[0])) is not None and " " not in span and not path_exists(path)]
    assert missing == []
    for doc in DOCS:
        text = doc.read_text()
        assert "../shared" not in text and "/work/" not in text, f"{doc.name} points outside the repository"
        for target in (t for _, t in LINK.findall(text) if not re.match(r"^(https?:|mailto:|#)", t)):
            assert (doc.parent / target.split("#")[0]).exists(), f"{doc.name}: link to {target}, which does not exist"


def test_modules_the_docs_name_exist():
    missing = []
    for doc, span in code_spans():
        if not re.fullmatch(r"(pipeline|trainer)(\.\w+)+", span):
            continue
        parts = span.split(".")
        target, cut = importlib.import_module(parts[0]), 1
        while cut < len(parts):   # the longest importable module, then attributes
            try:
                target, cut = importlib.import_module(".".join(parts[:cut + 1])), cut + 1
            except ModuleNotFoundError:
                break
        for name in parts[cut:]:
            if not hasattr(target, name):
                missing.append(f"{doc}: `{span}`")
                break
            target = getattr(target, name)
    assert missing == []


def test_abbreviations_link_to_the_glossary_where_each_page_first_uses_them():
    glossary = GLOSSARY.read_text()
    unlinked = []
    for term in ABBREVIATIONS:
        anchor = term.lower()
        assert f'<a id="{anchor}"></a>**{term}**' in glossary, f"{term} is not defined in docs/glossary.md"
        target = "glossary.md#" + anchor
        for doc in DOCS:
            text = prose(doc)
            hidden = [m.span() for m in CODE_SPAN.finditer(text)] + \
                     [(m.start(2), m.end(2)) for m in LINK.finditer(text)]
            uses = [m for m in re.finditer(rf"(?<![\w-]){term}(?:s|\d+)?(?![\w-])", text)
                    if not any(a <= m.start() < b for a, b in hidden)]
            if not uses:
                continue
            linked = [m for m in LINK.finditer(text) if m.group(2).endswith(target)]
            first = uses[0].start()
            if not any(link.start(1) <= first < link.end(1) for link in linked) and doc != GLOSSARY:
                line = text.count("\n", 0, first) + 1
                unlinked.append(f"{doc.name}:{line}: {term}")
    assert unlinked == [], "first use of an abbreviation, not linked to docs/glossary.md#<term>"


def failure_reasons_in_the_code() -> set[str]:
    """Every reason code the pipeline can record: ClipPathError / DecodeError("code", …),
    job.fail(clip, "code", …), and the folder's "reason": "code" for rows never processed."""
    import ast

    found = set()
    for path in (ROOT / "pipeline").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                position = {"ClipPathError": 0, "DecodeError": 0, "fail": 1}.get(name)
                if position is not None and len(node.args) > position and isinstance(node.args[position], ast.Constant):
                    found.add(node.args[position].value)
            elif isinstance(node, ast.Dict):
                found |= {v.value for k, v in zip(node.keys, node.values) if isinstance(k, ast.Constant)
                          and k.value == "reason" and isinstance(v, ast.Constant) and v.value}
    return found


def test_every_failure_reason_is_in_the_status_schema_and_the_shard_format_page():
    import json

    reasons = failure_reasons_in_the_code()
    assert {"missing_file", "no_official_crop", "no_face", "not_processed", "truncated"} <= reasons
    schema = json.loads((ROOT / "docs" / "schema" / "status.schema.json").read_text())
    assert set(schema["properties"]["reason"]["examples"]) == reasons
    listed = (ROOT / "docs" / "shard-format.md").read_text().split("| `reason` |", 1)[1].split("\n", 1)[0]
    assert set(re.findall(r"`([a-z_]+)`", listed)) == reasons
