"""Checkpoints of a training run: what is saved (trainable weights, RNG states), written atomically,
and loaded back with `weights_only` (tensors, numbers, strings, lists and dicts; no pickled objects)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from pipeline.shards.files import AtomicFile


def rng_state() -> dict:
    """Every generator's state, as plain lists and tensors so checkpoints load with weights_only."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(internal), gauss], "numpy": [kind, torch.from_numpy(keys.astype(np.int64)),
                                                                    pos, has_gauss, cached],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Only what training changes: frozen CLIP weights come back from the CLIP checkpoint."""
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().cpu() for k, v in model.state_dict().items() if k in names}


def save_checkpoint(path: Path, payload: dict) -> None:
    """Write atomically: an interrupted write leaves the previous checkpoint intact."""
    with AtomicFile(path) as f:
        torch.save(payload, f)


def load_checkpoint(path: Path) -> dict:
    """Checkpoints hold only tensors, numbers, strings, lists and dicts: weights_only loading."""
    return torch.load(path, map_location="cpu", weights_only=True)
