"""Experiment for issue 18: how much a frozen CLIP backbone knows about the sample's expressions.

    python tools/probe_backbone.py --clip runs/tiny-synthetic/tiny-synthetic.pt [--shards shards/sample]

For every scored clip of every fold (the trainer's own test-time loader: 8 frames, whole crop)
it takes the frozen image embeddings and reports, over the 5 folds:
- zero-shot UAR/WAR: the mean frame embedding against FineCLIPER's positive class prompts;
- linear-probe UAR/WAR: a multinomial logistic regression (L2, full batch L-BFGS) on
  standardised features [mean embedding, mean of the second half − mean of the first half],
  trained on the other four folds, tested on each fold in turn.
A backbone worth freezing gives the adapters something to read: the probe well above chance
(1/7), which a random CLIP of the same size does not reach. Writes nothing; prints one JSON line.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F

from trainer.clip_loader import load_clip, random_clip
from trainer.config import resolve
from trainer.data import clip_normalise, dataset_folds, make_loader, read_index
from trainer.metrics import recognition_metrics
from trainer.models import build_model
from trainer.pretrain_tiny import class_prompts


@torch.no_grad()
def clip_features(clip: torch.nn.Module, shards: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Per scored clip: (K, D) frame embeddings, the class index and the fold."""
    index = read_index(shards)
    classes = list(index["classes"])
    net = build_model("tiny-random", classes)     # only for the loader settings a tiny model implies
    feats, labels, folds = [], [], []
    for fold in dataset_folds(index):
        config = resolve("tiny", "sample", {"shards": shards, "fold": fold, "workers": 0, "num_frames": 8})
        loader = make_loader(config.data_config(net), "test", classes)
        for batch in loader:
            frames = clip_normalise(batch["frames"])
            b, k = frames.shape[:2]
            feats.append(F.normalize(clip.encode_image(frames.flatten(0, 1)), dim=-1).view(b, k, -1).numpy())
            labels.append(batch["labels"].numpy())
            folds.append(np.full(b, fold))
    return np.concatenate(feats), np.concatenate(labels), np.concatenate(folds), classes


@torch.no_grad()
def zero_shot(clip: torch.nn.Module, frames: np.ndarray, classes: list[str]) -> np.ndarray:
    prompts = class_prompts(clip, classes)
    video = F.normalize(torch.from_numpy(frames).mean(1), dim=-1)
    return (video @ prompts.T).argmax(1).numpy()


def probe_features(frames: np.ndarray) -> np.ndarray:
    k = frames.shape[1]
    return np.concatenate([frames.mean(1), frames[:, k // 2:].mean(1) - frames[:, :k // 2].mean(1)], 1)


def linear_probe(x: np.ndarray, y: np.ndarray, train: np.ndarray, classes: int, l2: float = 1e-2) -> np.ndarray:
    mean, std = x[train].mean(0), x[train].std(0) + 1e-6
    xt = torch.from_numpy((x - mean) / std).float()
    w = torch.zeros(x.shape[1], classes, requires_grad=True)
    b = torch.zeros(classes, requires_grad=True)
    optimiser = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")
    target = torch.from_numpy(y[train]).long()

    def closure():
        optimiser.zero_grad()
        loss = F.cross_entropy(xt[train] @ w + b, target) + l2 * (w ** 2).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    return (xt @ w + b).argmax(1).detach().numpy()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", default="", help="checkpoint file; empty: the random tiny-synthetic CLIP")
    parser.add_argument("--shards", default="shards/sample")
    a = parser.parse_args(argv)
    torch.manual_seed(0)
    clip = (load_clip(a.clip)[0] if a.clip else random_clip("tiny-synthetic")).eval()
    frames, y, folds, classes = clip_features(clip, a.shards)
    zs = zero_shot(clip, frames, classes)
    x = probe_features(frames)
    probe = np.empty_like(y)
    for fold in np.unique(folds):
        test = folds == fold
        probe[test] = linear_probe(x, y, ~test, len(classes))[test]
    result = {"clip": a.clip or "random tiny-synthetic", "clips": int(len(y)),
              "zero_shot": recognition_metrics(y, zs, classes), "linear_probe": recognition_metrics(y, probe, classes)}
    print(json.dumps({k: ({m: round(v, 1) for m, v in r.items() if m in ("uar", "war")} if isinstance(r, dict) else r)
                      for k, r in result.items()}))


if __name__ == "__main__":
    main()
