"""The architecture holds: pipeline/ by concern, imports flowing one way, no entry point imported,
backend names only in the backend registry."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pipeline", "trainer")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def is_entry_point(path: Path) -> bool:
    return path.name == "__main__.py" or '__name__ == "__main__"' in path.read_text()


def test_no_module_imports_an_entry_point():
    all_modules = modules()
    entry_points = {name for name, path in all_modules.items() if is_entry_point(path)}
    assert {"pipeline.preprocess", "trainer.train", "pipeline.sample.__main__"} <= entry_points
    offenders = [f"{name} imports {target}" for name, path in all_modules.items()
                 for target in imported(path) & entry_points if target != name]
    assert offenders == []


def test_imports_flow_one_way():
    for name, path in modules().items():
        if name.startswith("pipeline"):
            assert not any(t.split(".")[0] == "trainer" for t in imported(path)), f"{name} imports the trainer"
        if name.startswith("pipeline.shards"):   # the contract: no models, no Ray, no torch
            heavy = {t.split(".")[0] for t in imported(path)} & {"torch", "ray", "dlib", "av", "transformers"}
            assert not heavy, (name, heavy)
            assert not any(t.startswith("pipeline.") and not t.startswith("pipeline.shards") for t in imported(path)), name


def test_pipeline_is_laid_out_by_concern():
    top = sorted(p.name for p in (ROOT / "pipeline").glob("*.py"))
    assert len(top) <= 8, top
    for package in sorted(p for p in (ROOT / "pipeline").iterdir() if (p / "__init__.py").is_file()):
        assert ast.get_docstring(ast.parse((package / "__init__.py").read_text())), f"{package.name} has no docstring"
    for path in modules().values():
        assert ast.get_docstring(ast.parse(path.read_text())), f"{path} has no module docstring"


def test_backend_names_live_in_the_registry_and_the_backends():
    backend_modules = {"backends.py", "dlib_models.py", "sfd_detector.py", "fan_landmarks.py", "bisenet_parser.py",
                       "landmark_masks.py", "geometric.py", "videollava.py", "qwen25vl.py"}
    names = re.compile(r'"(dlib|sfd|fan|bisenet|geometric|videollava|qwen2\.5-vl)"')
    offenders = [f"{path.relative_to(ROOT)}:{number}" for path in (ROOT / "pipeline").rglob("*.py")
                 if path.name not in backend_modules
                 for number, line in enumerate(path.read_text().splitlines(), 1) if names.search(line)]
    assert offenders == []
