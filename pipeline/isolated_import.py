"""Import single modules from packages whose `__init__` pulls in something unusable.

OpenAI's `clip` package and `facexlib` import torchvision (and `pkg_resources`) from their
package `__init__`; torchvision has no working build for the CPU-only torch we pin. Their
model definitions (`clip/model.py`, `clip/simple_tokenizer.py`,
`facexlib/parsing/bisenet.py`) need none of that. `import_module_file("clip.model")`
executes only that file: every parent package is registered under a private prefix as a
bare namespace (its `__path__` set, its `__init__` never run), so relative imports between
sibling modules still work. `package_dir` finds a package's folder without importing it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

_PREFIX = "_dfer_isolated"


def package_dir(package: str) -> Path:
    """The folder of an installed package, found without executing its `__init__`."""
    top, *rest = package.split(".")
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"package {top!r} is not installed (see requirements.txt)")
    return Path(spec.submodule_search_locations[0]).joinpath(*rest)


def _bare_package(name: str, path: Path) -> types.ModuleType:
    module = sys.modules.get(name)
    if module is None:
        module = types.ModuleType(name)
        module.__path__ = [str(path)]
        module.__package__ = name
        sys.modules[name] = module
    return module


def import_module_file(dotted: str) -> types.ModuleType:
    """Import module `dotted` (e.g. "clip.model") without running its packages' `__init__`."""
    *packages, _ = dotted.split(".")
    if not packages:
        raise ValueError(f"{dotted!r} is a top-level module; import it normally")
    name = _PREFIX
    _bare_package(name, Path())
    for i in range(len(packages)):
        name = f"{name}.{packages[i]}"
        _bare_package(name, package_dir(".".join(packages[: i + 1])))
    return importlib.import_module(f"{_PREFIX}.{dotted}")
