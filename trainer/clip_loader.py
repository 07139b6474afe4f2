"""OpenAI CLIP for the trainer: checkpoints, the tokenizer, and small random CLIPs.

`load_clip("ViT-B/16")` finds OpenAI's checkpoint in a cache folder (`cache_dir`, else
`$CLIP_CACHE`, else `~/.cache/clip`, the folder the `clip` package itself uses, so files it
fetched are reused), or downloads it from OpenAI's URL unless downloads are off
(`HF_HUB_OFFLINE=1` or `DFER_OFFLINE=1`). A cached file is always checked against the
SHA-256 that OpenAI embeds in the URL: hashing costs about a second per load, and a
truncated or stale file would otherwise fail later with an error that says nothing about the
file. A path given by the user is taken as it is (it may be a fine-tuned or converted state
dict with no published hash).

The model, the URL table and the tokenizer are OpenAI's `clip` package's own. We keep our own
download path rather than `clip.load`, for three things it lacks: an offline switch whose
error says which file to fetch and where to put it, a hash failure that names the file, and
a download written to a temporary file first (`clip.load` writes into the cache directly).
Checkpoints are read as TorchScript archives (OpenAI's format)
or as plain state dicts saved with `torch.save`, never by unpickling arbitrary objects.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Sequence

import torch
from torch import nn

with warnings.catch_warnings():
    # openai-clip 1.0.1 imports pkg_resources (hence setuptools<81 in the lock), which warns on import.
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    import clip
    import clip.model
    from clip.clip import _MODELS

from pipeline.shards.files import file_sha256
from pipeline.weights import downloads_allowed

# OpenAI's own table of checkpoint URLs (name -> URL whose second-to-last segment is the
# file's SHA-256). `clip.available_models()` lists the same names; the URLs are only in here.
CLIP_URLS: dict[str, str] = _MODELS

# `clip.model.CLIP` hyper-parameters of the ViT checkpoints (what `build_model` derives from
# their state dicts), to build a randomly initialised model of the real size without weights.
# "tiny" is ours: a random CLIP small enough for CPU tests and the demo; "tiny-synthetic" is
# the larger one `make pretrain-tiny` trains. Its heads are width // 64, as
# `build_model` assumes, so a saved tiny checkpoint loads back into the identical model.
CLIP_ARCHITECTURES: dict[str, dict[str, int]] = {
    "ViT-B/32": dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768, vision_patch_size=32,
                     context_length=77, vocab_size=49408, transformer_width=512, transformer_heads=8,
                     transformer_layers=12),
    "ViT-B/16": dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768, vision_patch_size=16,
                     context_length=77, vocab_size=49408, transformer_width=512, transformer_heads=8,
                     transformer_layers=12),
    "ViT-L/14": dict(embed_dim=768, image_resolution=224, vision_layers=24, vision_width=1024, vision_patch_size=14,
                     context_length=77, vocab_size=49408, transformer_width=768, transformer_heads=12,
                     transformer_layers=12),
    "ViT-L/14@336px": dict(embed_dim=768, image_resolution=336, vision_layers=24, vision_width=1024,
                           vision_patch_size=14, context_length=77, vocab_size=49408, transformer_width=768,
                           transformer_heads=12, transformer_layers=12),
    "tiny": dict(embed_dim=64, image_resolution=64, vision_layers=2, vision_width=64, vision_patch_size=8,
                 context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1,
                 transformer_layers=2),
    # The CLIP `make pretrain-tiny` trains (trainer/pretrain_tiny.py).
    "tiny-synthetic": dict(embed_dim=128, image_resolution=64, vision_layers=3, vision_width=128,
                           vision_patch_size=8, context_length=77, vocab_size=49408, transformer_width=128,
                           transformer_heads=2, transformer_layers=3),
}


@dataclass(frozen=True)
class ShippedClip:
    """A CLIP checkpoint that ships inside this package, found by name and checked by hash like OpenAI's."""

    path: str      # inside the trainer package
    sha256: str

    def file(self) -> Path:
        return Path(__file__).resolve().parent / self.path


# Checkpoints shipped inside the package, by name. "tiny-synthetic": the CLIP `make pretrain-tiny`
# trains on synthetic face clips (trainer/pretrain_tiny.py; model card docs/tiny-clip.md); the
# JSON beside it is that run's record (settings, held-out numbers, time).
SHIPPED_CLIPS: dict[str, ShippedClip] = {
    "tiny-synthetic": ShippedClip("weights/tiny-synthetic.pt",
                                  "9098b6d81b98b939387940b6b62e7da338e505e8e9b97bb4e5cbf2ae3214a8c0"),
}


class ClipWeightsError(RuntimeError):
    """A CLIP checkpoint that is missing, cannot be fetched, or is not the published file."""


def clip_model_module() -> ModuleType:
    """OpenAI's `clip/model.py` (the CLIP, Transformer and build_model we use)."""
    return clip.model


def clip_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    chosen = cache_dir if cache_dir is not None else os.environ.get("CLIP_CACHE") or "~/.cache/clip"
    return Path(chosen).expanduser()


def expected_sha256(name: str) -> str:
    """The SHA-256 OpenAI publishes for a named checkpoint: the URL's second-to-last segment."""
    return CLIP_URLS[name].rsplit("/", 2)[-2]


def checkpoint_path(name_or_path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """The local file for a model name or path, downloading it when allowed (see module docstring)."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    name = str(name_or_path)
    if name in SHIPPED_CLIPS:
        return shipped_checkpoint(name)
    if name not in CLIP_URLS:
        raise ClipWeightsError(f"{name!r} is neither a file nor a CLIP model name; "
                               f"names: {', '.join(pretrained_names())}")
    url, sha256 = CLIP_URLS[name], expected_sha256(name)
    folder = clip_cache_dir(cache_dir)
    target = folder / url.rsplit("/", 1)[-1]
    where = (f"Download {url} on a connected machine and put it at {target} "
             f"(or set CLIP_CACHE / pass a folder that holds it, or give the file's path instead of {name!r}).")
    if target.is_file():
        found = file_sha256(target)
        if found == sha256:
            return target
        if not downloads_allowed():
            raise ClipWeightsError(f"{target} is not OpenAI's {name} checkpoint: its SHA-256 is {found}, "
                                   f"expected {sha256}. Delete it and fetch it again. {where}")
        warnings.warn(f"{target} has SHA-256 {found}, expected {sha256}; downloading it again", stacklevel=2)
    elif not downloads_allowed():
        raise ClipWeightsError(f"CLIP checkpoint {name} ({target.name}) is not in {folder} and downloads are off "
                               f"(HF_HUB_OFFLINE or DFER_OFFLINE is set). {where}")
    folder.mkdir(parents=True, exist_ok=True)
    try:
        # Writes a temporary file next to the target, checks the hash, then renames it: an
        # interrupted or corrupt download never sits in the cache under the official name.
        torch.hub.download_url_to_file(url, str(target), hash_prefix=sha256, progress=True)
    except Exception as error:  # no network, HTTP error, wrong hash, unwritable folder
        raise ClipWeightsError(f"could not download CLIP {name}: {type(error).__name__}: {error}. {where}") from error
    return target


def pretrained_names() -> list[str]:
    """Every CLIP name `load_clip` accepts: OpenAI's and the ones shipped with this package."""
    return [*CLIP_URLS, *SHIPPED_CLIPS]


def shipped_checkpoint(name: str) -> Path:
    """The file of a checkpoint shipped in this package, after checking its SHA-256."""
    shipped = SHIPPED_CLIPS[name]
    target = shipped.file()
    if not target.is_file():
        raise ClipWeightsError(f"CLIP checkpoint {name} should ship with this package at {target} but is missing; "
                               f"reinstall the package, or rebuild it with `make pretrain-tiny`")
    found = file_sha256(target)
    if found != shipped.sha256:
        raise ClipWeightsError(f"{target} is not the shipped {name} checkpoint: its SHA-256 is {found}, expected "
                               f"{shipped.sha256}. Restore it (git checkout {shipped.path} in the trainer package), "
                               f"or pass a rebuilt file's path instead of the name {name!r}")
    return target


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a TorchScript archive (OpenAI's .pt files) or of a `torch.save`d state dict."""
    try:
        return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
    except RuntimeError:
        pass  # not a TorchScript archive
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ClipWeightsError(f"{path} is neither a TorchScript archive nor a state dict saved with "
                               f"torch.save: {type(error).__name__}: {error}") from error
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ClipWeightsError(f"{path} does not hold a CLIP state dict (a flat dict of tensors)")
    return state


def load_clip(name_or_path: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
              device: str | torch.device = "cpu") -> tuple[nn.Module, int]:
    """OpenAI CLIP as `clip.model.CLIP` in float32, and the image size it expects."""
    state = read_state_dict(checkpoint_path(name_or_path, cache_dir))
    model = clip_model_module().build_model(state).float()
    # build_model stores the weights in fp16 (OpenAI's checkpoints are fp16, so they lose
    # nothing); loading again into the fp32 model keeps an fp32 checkpoint exact.
    model.load_state_dict(state)
    return model.to(device), model.visual.input_resolution


def random_clip(architecture: str, seed: int = 0) -> nn.Module:
    """A randomly initialised `clip.model.CLIP` of a named architecture (see CLIP_ARCHITECTURES)."""
    try:
        hyper = CLIP_ARCHITECTURES[architecture]
    except KeyError:
        raise KeyError(f"unknown CLIP architecture {architecture!r}; known: {', '.join(CLIP_ARCHITECTURES)}") from None
    # Seed a forked RNG so building a model never shifts the caller's random stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return clip_model_module().CLIP(**hyper).float().eval()


def tiny_clip(seed: int = 0) -> nn.Module:
    """A small random CLIP (64 px images, 8 px patches, 2+2 layers of width 64) built from the real class."""
    return random_clip("tiny", seed)


def tokenize(texts: str | Sequence[str], context_length: int = 77) -> torch.LongTensor:
    """CLIP token ids, one row per text, zero-padded; a long text is cut but keeps its end token."""
    return clip.tokenize(texts, context_length=context_length, truncate=True).long()
