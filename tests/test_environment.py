"""The environment files agree, hold no forbidden package, and our imports avoid torchvision."""

import importlib.metadata
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.isolated_import import import_module_file, package_dir

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {"torchvision", "timm", "open-clip-torch", "open_clip_torch", "clip-anytorch", "llava-torch", "llava"}
PIN = re.compile(r"^\s*(?:-\s+)?([A-Za-z0-9_.\-\[\]]+)==([^\s#]+)\s*$")


def pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if m := PIN.match(line):
            out[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return out


def test_requirements_and_environment_yml_agree_on_every_pin():
    req, env = pins(ROOT / "requirements.txt"), pins(ROOT / "environment.yml")
    assert len(req) > 50, "requirements.txt is a full lock"
    assert req == env
    assert req["torch"] == "2.13.0"
    assert req["face-alignment"] == "1.5.0"
    assert int(req["opencv-python"].split(".")[0]) < 5
    assert "opencv-python-headless" not in req, "one cv2 only: the package face-alignment asks for"
    assert "python=3.11" in (ROOT / "environment.yml").read_text()


def test_no_forbidden_package_is_listed_or_installed():
    for path in ("requirements.txt", "environment.yml"):
        assert not FORBIDDEN & set(pins(ROOT / path)), path
    installed = {re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower() for d in importlib.metadata.distributions()}
    assert not FORBIDDEN & installed
    assert importlib.util.find_spec("torchvision") is None


def test_installed_versions_match_the_lock():
    for name, version in pins(ROOT / "requirements.txt").items():
        installed = importlib.metadata.version(name)
        assert installed.split("+")[0] == version, f"{name}: installed {installed}, locked {version}"


def test_importing_our_packages_does_not_import_torchvision():
    code = ("import sys, pipeline, trainer, pipeline.manifest, pipeline.shard_io, pipeline.isolated_import\n"
            "from pipeline.isolated_import import import_module_file\n"
            "import_module_file('clip.model'); import_module_file('clip.simple_tokenizer')\n"
            "import_module_file('facexlib.parsing.bisenet')\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torchvision', 'clip', 'facexlib')]\n"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_clip_model_and_tokenizer_load_without_the_package_init():
    clip_model = import_module_file("clip.model")
    tokenizer = import_module_file("clip.simple_tokenizer").SimpleTokenizer()
    tokens = tokenizer.encode("a person with an expression of happiness.")
    assert tokenizer.decode(tokens).strip() == "a person with an expression of happiness ."
    model = clip_model.CLIP(embed_dim=32, image_resolution=32, vision_layers=1, vision_width=64,
                            vision_patch_size=16, context_length=16, vocab_size=49408,
                            transformer_width=32, transformer_heads=2, transformer_layers=1).eval()
    text = torch.zeros(1, 16, dtype=torch.long)
    text[0, : len(tokens) + 2] = torch.tensor([49406, *tokens, 49407])
    with torch.no_grad():
        logits_image, logits_text = model(torch.randn(2, 3, 32, 32), text)
    assert logits_image.shape == (2, 1) and torch.isfinite(logits_image).all()


def test_facexlib_bisenet_and_dlib_predictor_load():
    bisenet = import_module_file("facexlib.parsing.bisenet").BiSeNet(num_class=19).eval()
    with torch.no_grad():
        out = bisenet(torch.zeros(1, 3, 64, 64))[0]
    assert out.shape == (1, 19, 64, 64)
    import dlib

    model = package_dir("face_recognition_models") / "models" / "shape_predictor_68_face_landmarks.dat"
    predictor = dlib.shape_predictor(str(model))
    image = np.zeros((100, 100, 3), np.uint8)
    shape = predictor(image, dlib.rectangle(10, 10, 90, 90))
    assert shape.num_parts == 68


def test_isolated_import_names_a_missing_package():
    with pytest.raises(ModuleNotFoundError, match="not installed"):
        package_dir("no_such_package_xyz")
