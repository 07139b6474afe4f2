"""Where the toolkit's own data files are: prompts and word lists, and the dataset manifests.

In the repository they are top-level folders, `prompts/` and `manifests/`. An installed copy
(`pip install .`) carries them as package data of `pipeline` (pyproject.toml maps the packages
`pipeline.prompts` and `pipeline.manifests` onto those folders), so they land in
`site-packages/pipeline/prompts/` and `.../manifests/`. `data_dir` is the one lookup: every
module asks here rather than computing a path of its own.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DATA_FOLDERS = ("prompts", "manifests")


def data_dir(name: str) -> Path:
    """The folder of shipped data `name` ("prompts" or "manifests"): inside the installed package
    when it is there, else the repository's top-level folder beside `pipeline/`."""
    if name not in DATA_FOLDERS:
        raise ValueError(f"unknown data folder {name!r}; the toolkit ships {', '.join(DATA_FOLDERS)}")
    installed = PACKAGE_DIR / name
    return installed if installed.is_dir() else PACKAGE_DIR.parent / name


PROMPTS_DIR = data_dir("prompts")
MANIFESTS_DIR = data_dir("manifests")


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
