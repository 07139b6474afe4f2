"""Where the toolkit's own data files are: prompts and word lists, and the dataset manifests.

They are package data of `pipeline` (`pipeline/prompts/`, `pipeline/manifests/`), so a copy
installed with `pip install` finds them exactly as a checkout does. Every module asks here
rather than computing a path of its own.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROMPTS_DIR = PACKAGE_DIR / "prompts"
MANIFESTS_DIR = PACKAGE_DIR / "manifests"


def resolve_prompt_file(path: str | Path) -> Path:
    """A prompt file named in a configuration: a path (absolute, or relative to the working
    folder) when that file exists, else a file of the shipped prompts/ ("label_templates.yaml",
    or "prompts/label_templates.yaml" as run folders from before the move recorded it)."""
    given = Path(path).expanduser()
    if given.is_absolute() or given.is_file():
        return given
    shipped = PROMPTS_DIR / str(path).removeprefix("prompts/")
    if shipped.is_file():
        return shipped
    raise FileNotFoundError(f"prompt file {str(path)!r} is neither a file nor one of {PROMPTS_DIR}: "
                            f"{', '.join(sorted(p.name for p in PROMPTS_DIR.iterdir() if p.is_file()))}")
