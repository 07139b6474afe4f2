"""`make help` tells the truth: every target and every variable the Makefile reads is in its output."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAKEFILE = ROOT / "Makefile"
BUILT_IN = {"MAKEFILE_LIST", "MAKE", "CURDIR"}


def makefile_names(text: str) -> tuple[set[str], set[str]]:
    """(targets, variables a user may set or a recipe reads) of a Makefile's text. Variables assigned
    with `:=` are the Makefile's own (the venv's paths) and those in lower case its internal option
    bundles; every other upper-case name read anywhere, or set with `?=`, is the user's."""
    targets = {m for m in re.findall(r"^([a-z][a-z-]*):(?!=)", text, re.M)}
    internal = set(re.findall(r"^([A-Z_]+) :=", text, re.M)) | BUILT_IN
    read = set(re.findall(r"\$\(([A-Z][A-Z0-9_]*)\)", text))           # $(NAME)
    read |= set(re.findall(r"\$\(call given,([A-Z][A-Z0-9_]*)\)", text))   # $(origin NAME) through `given`
    settable = set(re.findall(r"^([A-Z][A-Z0-9_]*) \?=", text, re.M))
    return targets, (read | settable) - internal


def help_sections(output: str) -> tuple[set[str], set[str]]:
    """(targets, variables) listed by `make help`."""
    targets_part, _, variables_part = output.partition("Variables")
    targets = set(re.findall(r"^  ([a-z][a-z-]*)\s", targets_part, re.M))
    variables = set(re.findall(r"^  ([A-Z][A-Z0-9_]*)\s", variables_part, re.M))
    return targets, variables


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_make_help_lists_every_target_and_every_variable_the_makefile_reads():
    output = subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, check=True).stdout
    listed_targets, listed_variables = help_sections(output)
    targets, variables = makefile_names(MAKEFILE.read_text())
    assert {"train", "eval", "predict", "describe", "preprocess", "help"} <= targets    # the parser finds them
    assert {"DESCRIBER", "ROWS", "CHECKPOINT", "VIDEO", "CLIP", "PYTHON", "NAME", "QUICK"} <= variables
    assert not targets - listed_targets, f"targets missing from make help: {sorted(targets - listed_targets)}"
    assert not variables - listed_variables, f"variables missing from make help: {sorted(variables - listed_variables)}"
    # and the help names nothing the Makefile does not have
    assert not listed_targets - targets and not listed_variables - variables
    # a current value is shown beside its variable
    assert re.search(r"^  DATASET .*\[sample\]$", output, re.M)


def test_the_check_catches_an_undocumented_variable_and_target():
    """The parser on a Makefile with a recipe variable and a target that no help line names."""
    text = MAKEFILE.read_text() + "\nextra:\n\t$(PY) -m foo $(UNLISTED_OPTION)\n"
    targets, variables = makefile_names(text)
    assert "extra" in targets and "UNLISTED_OPTION" in variables
    assert "PY" not in variables and "STAMP" not in variables and "run_options" not in variables
