"""The figures the docs quote are the figures in the JSON they cite, measured at the commit and with
the torch version the page names.

The convention, in the Markdown source (HTML comments, invisible once rendered):

- `<!-- source: bench/results/X.json commit=b0eab18 torch=2.14.1+cu130 -->` names the JSON that
  the figures after it come from, up to the next `source` comment. The JSON must exist; where it
  records a torch version (`machine.torch`, `torch`, or the `summary.json` of the same `make
  bench` run beside it) or a commit (`machine.commit`), they must be the ones given; the commit
  must be in the repository's history; and the page's visible text from there to the next
  `source` must name both, so a reader sees what the figures were measured at.
- `4.16<!-- = targets[2].value -->`: the number just before the comment (a unit or `**` may sit
  between) equals the JSON value at that key, rounded to the decimals the page shows. A key is
  dotted, `[i]` indexes a list, `["a.b"]` quotes a key with dots or spaces; `/ 1024` or `* 100`
  after it scales the value.
- `4.16<!-- = loader_speed.json: target.ratio -->` takes the value from another JSON in the
  same folder (another part of the same `make bench` run), under the same commit and torch.
- `<!-- table: - | results.{row}.bytes_per_clip / 1024 | results.{row}.decode16_ms -->` before a
  table gives each column's key (`-`: not checked), and `<!-- row jpeg_q85 -->` in a row's
  first cell fills `{row}` (`<!-- row hd 1 -->` also fills `{0}` and `{1}`, its words). A cell with no number (`lossless`, `—`) must have no value in the JSON.
"""

import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SOURCE = re.compile(r"<!-- source: (\S+\.json) commit=([0-9a-f]{7,40}) torch=(\S+) -->")
FIGURE = re.compile(r"(-?\d[\d,]*(?:\.\d+)?)([^\d<|\n]{0,8}?)<!-- = ([^>]+?) -->")
TABLE = re.compile(r"<!-- table: ([^>]+?) -->")
ROW = re.compile(r"<!-- row ([^>]+?) -->")
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
MAKE_BENCH = ("frame_encoding", "pipeline_speed", "loader_speed", "trainer_speed")   # what bench/run_all.py writes


def lookup(data, path: str):
    """The value at a dotted key path (`a.b[0]["c.d"]`); KeyError naming the path when absent."""
    value = data
    for quoted, index, name in re.findall(r'\["([^"]+)"\]|\[(\d+)\]|([^.\[\]]+)', path):
        try:
            value = value[int(index)] if index else value[quoted or name]
        except (KeyError, IndexError, TypeError):
            raise KeyError(path) from None
    return value


def resolve(data, expression: str):
    """A key path with an optional ` / N` or ` * N` (spaces around the sign) after it."""
    match = re.fullmatch(r"\s*(.+?)(?:\s+([*/])\s+([\d.e+-]+))?\s*", expression)
    value = lookup(data, match.group(1))
    if match.group(2) and value is not None:
        value = value * float(match.group(3)) if match.group(2) == "*" else value / float(match.group(3))
    return value


def same(shown: str, value) -> bool:
    """`shown` (as printed, with thousands separators) is `value` rounded to its decimals."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    decimals = len(shown.split(".")[1]) if "." in shown else 0
    return abs(float(shown.replace(",", "")) - value) <= 0.5 * 10 ** -decimals + 1e-9


def recorded(json_path: Path, data: dict, field: str):
    for where in (data.get("machine") or {}, data):
        if isinstance(where, dict) and where.get(field):
            return where[field]
    summary = json_path.parent / "summary.json"   # the `make bench` run that wrote this JSON
    if field == "torch" and summary.is_file() and json_path.stem in MAKE_BENCH:
        return (json.loads(summary.read_text()).get("machine") or {}).get("torch")
    return None


def page(doc: Path) -> str:
    """The page with its code spans blanked: a tag written out as an example in `…` is no tag."""
    return re.sub(r"`[^`\n]*`", lambda m: " " * len(m.group(0)), doc.read_text())


def sections(doc: Path) -> list[tuple[re.Match, str]]:
    """(source comment, the page's text up to the next one) for each source comment."""
    text = page(doc)
    found = list(SOURCE.finditer(text))
    return [(m, text[m.end():found[i + 1].start() if i + 1 < len(found) else len(text)]) for i, m in enumerate(found)]


def in_history(commit: str) -> bool | None:
    shallow = subprocess.run(["git", "rev-parse", "--is-shallow-repository"], cwd=ROOT, capture_output=True, text=True)
    if shallow.returncode != 0 or shallow.stdout.strip() == "true":
        return None   # no (full) history to look in
    return subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=ROOT, capture_output=True).returncode == 0


QUOTING = [doc for doc in DOCS if SOURCE.search(page(doc))]


def test_the_pages_that_quote_measurements_cite_their_json():
    names = {doc.name for doc in QUOTING}
    assert {"benchmarks.md", "shard-format.md", "training.md"} <= names
    for doc in DOCS:   # a figure or table tag with no source before it cites nothing
        text = page(doc)
        first = SOURCE.search(text)
        for tag in (*FIGURE.finditer(text), *TABLE.finditer(text)):
            assert first is not None and first.start() < tag.start(), f"{doc.name}: {tag.group(0)} before any source"


@pytest.mark.parametrize("doc", QUOTING, ids=[d.name for d in QUOTING])
def test_quoted_figures_equal_the_json_they_cite(doc):
    problems = []
    for source, body in sections(doc):
        path, commit, torch = source.groups()
        json_path = ROOT / path
        assert json_path.is_file(), f"{doc.name}: cites {path}, which does not exist"
        data = json.loads(json_path.read_text())
        if (their := recorded(json_path, data, "torch")) is not None and their != torch:
            problems.append(f"{path}: measured with torch {their}, the page says {torch}")
        if (their := recorded(json_path, data, "commit")) is not None and not their.startswith(commit):
            problems.append(f"{path}: measured at commit {their}, the page says {commit}")
        if in_history(commit) is False:
            problems.append(f"{path}: commit {commit} is not in the repository's history")
        visible = re.sub(r"<!--.*?-->", "", body, flags=re.S)
        if commit not in visible or torch not in visible:
            problems.append(f"{doc.name}: the figures of {path} do not say they are from commit {commit}, torch {torch}")
        for figure in FIGURE.finditer(body):
            shown, _, key = figure.groups()
            other = re.match(r"\s*([\w.-]+\.json):\s*(.+)", key)   # another JSON of the same run, beside it
            try:
                if other:
                    other_path = json_path.parent / other.group(1)
                    other_data = json.loads(other_path.read_text())
                    if (their := recorded(other_path, other_data, "torch")) is not None and their != torch:
                        problems.append(f"{other_path.name}: measured with torch {their}, the page says {torch}")
                    value = resolve(other_data, other.group(2))
                else:
                    value = resolve(data, key)
            except (KeyError, FileNotFoundError):
                problems.append(f"{doc.name}: {path} (or the JSON named) has no {key}")
                continue
            if not same(shown, value):
                problems.append(f"{doc.name}: {shown} for {key}, the JSON holds {value}")
        for table in TABLE.finditer(body):
            columns = [c.strip() for c in table.group(1).split("|")]
            rows = [line for line in body[table.end():].lstrip("\n").split("\n\n")[0].splitlines()
                    if line.startswith("|") and ROW.search(line)]
            assert rows, f"{doc.name}: a table of {path} has no row tags"
            for line in rows:
                row = ROW.search(line).group(1)
                cells = [c.strip() for c in line.strip().strip("|").split("|")]
                assert len(cells) == len(columns), f"{doc.name}: {len(cells)} cells, {len(columns)} keys: {line}"
                for cell, column in zip(cells, columns):
                    if column == "-":
                        continue
                    key = column.replace("{row}", row)
                    for i, field in enumerate(row.split()):
                        key = key.replace(f"{{{i}}}", field)
                    try:
                        value = resolve(data, key)
                    except KeyError:
                        value = None
                    number = NUMBER.search(re.sub(r"<!--.*?-->", "", cell))
                    if number is None:
                        if value is not None:
                            problems.append(f"{doc.name}: '{cell}' for {key}, the JSON holds {value}")
                    elif not same(number.group(0), value):
                        problems.append(f"{doc.name}: {number.group(0)} for {key}, the JSON holds {value}")
    assert problems == []
