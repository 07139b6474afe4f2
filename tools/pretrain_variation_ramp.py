"""Experiment for issue 18: pretrain the tiny CLIP with the nuisance variation raised step by step.

    python tools/pretrain_variation_ramp.py [--levels 0.25 0.5 1.0] [--clean-steps 400] [--out runs/tiny-ramp.pt]

`make pretrain-tiny` goes from clean pairs (variation 0) straight to fully varied ones, and its
features stay at chance on varied clips (docs/training.md, "Pretraining a tiny CLIP"). This
runs the same model, loss and optimiser (trainer/pretrain_tiny.py) on a ramp: `--clean-steps`
on 3,000 clean pairs with short captions, then one epoch per level, each adding 2,000 pairs at
that `variation` to the pool. After each phase it prints held-out zero-shot UAR and caption
retrieval@1 at variation 0, 0.5 and 1 (256 pairs each). Stopped after the 0.25 level (2 cores
shared with CI, 2026-12-03) it had 0.71 / 0.055, 0.18 / 0.008 and 0.10 / 0.004.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.inputs.datasets import DATASETS
from trainer.clip_loader import tokenize
from trainer.pretrain_tiny import EVAL_SEED_OFFSET, build_clip, encode_clips, evaluate, generate_pairs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    parser.add_argument("--clean-pairs", type=int, default=3000)
    parser.add_argument("--pairs-per-level", type=int, default=2000)
    parser.add_argument("--clean-steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/tiny-ramp.pt"))
    a = parser.parse_args(argv)
    torch.set_num_threads(2)
    classes = list(DATASETS["sample"].classes)
    sets = [generate_pairs(a.seed, a.clean_pairs, variation=0.0, short_rate=1.0)]
    for k, level in enumerate(a.levels):
        sets.append(generate_pairs(a.seed, a.pairs_per_level, variation=level,
                                   first=a.clean_pairs + k * a.pairs_per_level))
    held = {v: generate_pairs(a.seed + EVAL_SEED_OFFSET, 256, variation=v, name_rate=0.0, first=k * 256)
            for k, v in enumerate((0.0, 0.5, 1.0))}
    model = build_clip(a.seed)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                                  lr=a.lr, betas=(0.9, 0.98), eps=1e-6)
    phases = [(1, a.clean_steps)] + [(k + 2, sum(len(s[1]) for s in sets[:k + 2]) // a.batch_size)
                                     for k in range(len(a.levels))]
    total = sum(steps for _, steps in phases)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    generator, start = torch.Generator().manual_seed(a.seed), time.perf_counter()
    for count, steps in phases:
        clips = torch.from_numpy(np.concatenate([s[0] for s in sets[:count]]))
        tokens = tokenize([c for s in sets[:count] for c in s[1]])
        order = torch.cat([torch.randperm(len(clips), generator=generator)
                           for _ in range(-(-steps * a.batch_size // len(clips)))])
        for step in range(steps):
            idx = order[step * a.batch_size:(step + 1) * a.batch_size]
            picks = torch.sort(torch.rand(len(idx), clips.shape[1], generator=generator).argsort(1)[:, :4], 1).values
            video = encode_clips(model, clips[idx[:, None], picks])
            text = F.normalize(model.encode_text(tokens[idx]), dim=-1)
            logits = model.logit_scale.exp() * video @ text.T
            target = torch.arange(len(idx))
            loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
        scores = {v: evaluate(model, h[0], tokenize(h[1]), h[2], classes) for v, h in held.items()}
        print(f"pool of {count} sets, {steps} steps, last loss {loss.item():.3f}; zero-shot UAR / retrieval@1 at "
              + ", ".join(f"{v}: {s['zero_shot_uar']:.3f} / {s['retrieval_top1']:.3f}" for v, s in scores.items())
              + f" ({time.perf_counter() - start:.0f} s)", flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().half().contiguous() for k, v in model.state_dict().items()}, a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
