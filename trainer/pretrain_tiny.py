"""Pretrain a tiny CLIP (`make pretrain-tiny`): OpenAI's `clip.model.CLIP`, small, on synthetic pairs.

    python -m trainer.pretrain_tiny [--out runs/tiny-synthetic/tiny-synthetic.pt] [--seed 0] [--pairs N] [--steps S] [--ramp-steps R]

The model is `clip.model.CLIP` with the "tiny-synthetic" hyper-parameters of
trainer/clip_loader.py, initialised by its own `initialize_parameters`. The data are the
video–caption pairs of trainer/synthetic_pairs.py. The objective is CLIP's: a symmetric
cross-entropy over the batch's video–caption cosines scaled by the learned `logit_scale`
(clamped at 100, as OpenAI's training code clamps it). A clip's embedding is the mean of its
frames' image embeddings (each step picks `frames` of the 8 rendered ones, in order).

A curriculum on the nuisances: over the first `--ramp-steps` the light drawn per clip
(`light_jitter`) rises from none to full and the pool of pairs widens from the least to the
most varied framing (`pair_variation`).

Deterministic from `--seed`: pairs depend only on (seed, index), the batch order, frame
picks and light on a torch generator seeded from it. The result is saved as a plain fp16 state dict
(OpenAI's checkpoints are fp16 too) that `trainer.clip_loader.load_clip` reads like theirs;
the run's numbers (zero-shot accuracy on held-out prototype clips, caption retrieval) go to
a JSON file beside it.

The defaults made the checkpoint shipped as "tiny-synthetic" (trainer/weights/, model card
docs/tiny-clip.md; 31 min on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.shards.files import AtomicFile, file_sha256
from pipeline.inputs.datasets import DATASETS
from pipeline.resources import resolve_prompt_file
from trainer.clip_loader import CLIP_ARCHITECTURES, clip_model_module, tokenize
from trainer.data import clip_normalise
from trainer.fineclip import read_label_templates
from trainer.metrics import recognition_metrics
from trainer.synthetic_pairs import light_jitter

DEFAULT_OUT = Path("runs/tiny-synthetic/tiny-synthetic.pt")
EVAL_SEED_OFFSET = 10_000  # held-out pairs come from stream seed + this

_WORKER: dict = {}


def say(message: str) -> None:
    print(message, flush=True)


def _init_worker() -> None:
    import cv2

    from pipeline.describers.geometric import GeometricDescriber
    from trainer.synthetic_pairs import load_identity

    cv2.setNumThreads(1)
    _WORKER["identity"] = load_identity()
    _WORKER["describer"] = GeometricDescriber()


def _make(args: tuple[int, int, int, float, float, float, bool]):
    from trainer.synthetic_pairs import make_pair

    seed, index, frames, name_rate, variation, short_rate, drawing = args
    pair = make_pair(_WORKER["identity"], _WORKER["describer"], seed, index, frames_per_clip=frames,
                     name_rate=name_rate, variation=variation, short_rate=short_rate, drawing=drawing)
    return pair.frames, pair.caption, pair.label


def generate_pairs(seed: int, count: int, frames: int = 8, name_rate: float = 0.25, workers: int | None = None,
                   log=say, variation: float | list[float] = 1.0, short_rate: float = 0.6, first: int = 0,
                   drawings: list[bool] | None = None) -> tuple[np.ndarray, list[str], list[str | None]]:
    """Pairs `first` … `first + count - 1` of stream `seed`, in index order whatever the number of workers;
    `variation` is one level for all, or one per pair; `drawings` marks the pairs whose frames are
    landmark drawings."""
    workers = workers or os.cpu_count() or 1
    start = time.perf_counter()
    levels = variation if isinstance(variation, (list, tuple)) else [variation] * count
    drawings = drawings or [False] * count
    jobs = [(seed, i, frames, name_rate, v, short_rate, d)
            for i, v, d in zip(range(first, first + count), levels, drawings)]
    clips, captions, labels = [], [], []
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker) as pool:
        for done, (f, c, l) in enumerate(pool.map(_make, jobs, chunksize=64), 1):
            clips.append(f)
            captions.append(c)
            labels.append(l)
            if done % 2000 == 0:
                log(f"  pairs: {done}/{count} ({time.perf_counter() - start:.0f} s)")
    return np.stack(clips), captions, labels


def build_clip(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return clip_model_module().CLIP(**CLIP_ARCHITECTURES["tiny-synthetic"]).float()


def pair_variation(index: int, variation: float) -> float:
    """Pair `index`'s own nuisance level in [0, `variation`): a low-discrepancy sequence (golden
    ratio), so any prefix of the stream spreads evenly over the levels."""
    return variation * ((index * 0.6180339887498949) % 1.0)


def is_drawing(index: int, share: float) -> bool:
    """Whether pair `index` shows landmark drawings rather than the face: a second low-discrepancy
    sequence (the plastic number's), independent of `pair_variation`'s."""
    return (index * 0.7548776662466927) % 1.0 < share


def encode_clips(model: torch.nn.Module, clips: torch.Tensor) -> torch.Tensor:
    """Unit-norm clip embeddings: the mean of the frames' image embeddings. `clips` is (B, K, S, S, 3)
    uint8 (as rendered) or (B, K, 3, S, S) pixels in [0, 255], uint8 or float (after `light_jitter`)."""
    if clips.shape[-1] == 3:
        clips = clips.permute(0, 1, 4, 2, 3)
    b, k = clips.shape[:2]
    frames = model.encode_image(clip_normalise(clips.float()).flatten(0, 1)).view(b, k, -1)
    return F.normalize(frames.mean(1), dim=-1)


def class_prompts(model: torch.nn.Module, classes: list[str]) -> torch.Tensor:
    """Unit-norm text embeddings of FineCLIPER's positive prompt for each class (the zero-shot classifier)."""
    positive = read_label_templates(resolve_prompt_file("label_templates.yaml"))["positive"]
    return F.normalize(model.encode_text(tokenize([positive.format(label=c) for c in classes])), dim=-1)


@torch.no_grad()
def evaluate(model: torch.nn.Module, clips, tokens: torch.Tensor, labels: list[str | None],
             classes: list[str], batch: int = 256) -> dict[str, float]:
    """Zero-shot class accuracy on the prototype clips, and caption→clip retrieval top-1 in
    groups of 256 (chance 1/256); clips use all their frames."""
    model.eval()
    clips = torch.as_tensor(clips)
    video = torch.cat([encode_clips(model, clips[i:i + batch]) for i in range(0, len(clips), batch)])
    text = torch.cat([F.normalize(model.encode_text(tokens[i:i + batch]), dim=-1) for i in range(0, len(tokens), batch)])
    prompts = class_prompts(model, classes)
    named = [i for i, l in enumerate(labels) if l is not None]
    predicted = (video[named] @ prompts.T).argmax(1)
    scores = recognition_metrics(np.array([classes.index(labels[i]) for i in named]), predicted.numpy(), classes)
    hits, total = 0, 0
    for i in range(0, len(video) - 255, 256):
        sims = text[i:i + 256] @ video[i:i + 256].T
        hits += int((sims.argmax(1) == torch.arange(256)).sum())
        total += 256
    model.train()
    return {"zero_shot_war": scores["war"] / 100, "zero_shot_uar": scores["uar"] / 100,
            "retrieval_top1": hits / max(total, 1), "eval_clips": len(clips)}


def held_out_pairs(seed: int, count: int, variation: float, drawings: bool = True, log=say) -> dict[str, tuple]:
    """Pairs never trained on (stream seed + EVAL_SEED_OFFSET), no class names in the captions:
    "clean" (no nuisance), "varied" (framing at `variation`, light at full strength, drawn once
    and rounded to 8 bits as a camera would) and, with `drawings`, "drawn" (landmark drawings at
    `variation`)."""
    held = seed + EVAL_SEED_OFFSET
    clean = generate_pairs(held, count, name_rate=0.0, variation=0.0, log=log)
    frames, captions, labels = generate_pairs(held, count, name_rate=0.0, variation=variation, first=count, log=log)
    lit = light_jitter(torch.from_numpy(frames).permute(0, 1, 4, 2, 3),
                       torch.Generator().manual_seed(held)).round_().to(torch.uint8)
    sets = {"clean": clean, "varied": (lit, captions, labels)}
    if drawings:
        sets["drawn"] = generate_pairs(held, count, name_rate=0.0, variation=variation, first=2 * count, log=log,
                                       drawings=[True] * count)
    return sets


def save_checkpoint(model: torch.nn.Module, out: Path) -> None:
    """An fp16 state dict, as OpenAI's checkpoints are stored, written atomically."""
    state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    with AtomicFile(out) as f:
        torch.save(state, f)


def _each(record: dict, kinds, metric: str) -> str:
    return " / ".join(f"{record[kind][metric]:.3f}" for kind in kinds)


def curriculum(step: int, ramp_steps: int) -> float:
    """How far into the nuisances training is at `step`, 0..1, rising linearly over `ramp_steps`."""
    return 1.0 if ramp_steps <= 0 else min(1.0, step / ramp_steps)


def pretrain(out: Path, seed: int = 0, pairs: int = 10000, steps: int = 2000, ramp_steps: int = 800,
             eval_pairs: int = 512, eval_every: int = 250, batch_size: int = 64, frames: int = 4, lr: float = 3e-4,
             weight_decay: float = 0.1, warmup_steps: int = 20, variation: float = 1.0, name_rate: float = 0.25,
             first_pool: float = 0.3, drawing_share: float = 0.0, threads: int | None = None, log=say) -> dict:
    """`steps` steps of CLIP's loss on `pairs` pairs, each with its own framing/codec level
    (`pair_variation`), and light drawn anew per use (`light_jitter`). A curriculum on the
    nuisances: over the first `ramp_steps` the light strength rises from 0 to 1 and the pool of
    pairs from those at levels below `first_pool` × `variation` to all of them. Straight onto fully
    varied pairs, the loss of a random CLIP sits at ln(batch) (docs/training.md)."""
    start = time.perf_counter()
    if threads:
        torch.set_num_threads(threads)
    classes = list(DATASETS["sample"].classes)
    log(f">> generating {pairs} training pairs, 2 × {eval_pairs} held out (seed {seed})")
    levels = np.array([pair_variation(i, variation) for i in range(pairs)])
    drawn = [is_drawing(i, drawing_share) for i in range(pairs)]
    clips, captions, _ = generate_pairs(seed, pairs, name_rate=name_rate, variation=levels.tolist(), log=log,
                                        drawings=drawn)
    held_out = held_out_pairs(seed, eval_pairs, variation, drawings=drawing_share > 0, log=log)
    photo = 1.0 - torch.tensor(drawn, dtype=torch.float32)    # light strength factor: none on drawings
    generated = time.perf_counter() - start
    tokens = tokenize(captions)
    held_tokens = {k: tokenize(v[1]) for k, v in held_out.items()}
    by_level = torch.from_numpy(np.argsort(levels, kind="stable"))
    model = build_clip(seed)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                   {"params": rest, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98), eps=1e-6)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup_steps)
                                                 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    generator = torch.Generator().manual_seed(seed)
    clips_t = torch.from_numpy(clips).permute(0, 1, 4, 2, 3)   # (N, 8, 3, S, S) uint8 view
    history, losses = [], []
    log(f">> pretraining: {steps} steps of {batch_size} pairs, {frames} frames each; nuisances ramped over "
        f"{ramp_steps} steps")
    for step in range(1, steps + 1):
        r = curriculum(step, ramp_steps)
        pool = max(batch_size, int(math.ceil(pairs * min(1.0, first_pool + (1 - first_pool) * r))))
        idx = by_level[torch.randperm(pool, generator=generator)[:batch_size]]
        picks = torch.sort(torch.rand(len(idx), clips.shape[1], generator=generator).argsort(1)[:, :frames], 1).values
        strength = r * photo[idx] if drawing_share > 0 else r     # a plain number keeps the shipped run's exact draws
        video = encode_clips(model, light_jitter(clips_t[idx[:, None], picks], generator, strength=strength))
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
        losses.append(loss.item())
        if step % eval_every == 0 or step == steps:
            record = {"step": step, "nuisance": r, "loss": float(np.mean(losses))}
            losses = []
            for kind, (c, _, labels) in held_out.items():
                record[kind] = evaluate(model, c, held_tokens[kind], labels, classes)
            history.append(record)
            save_checkpoint(model, out)    # the latest state, for a look while the run goes on
            log(f"  step {step}: loss {record['loss']:.3f} (nuisance {r:.2f}); held out, {' / '.join(held_out)}: "
                f"zero-shot UAR {_each(record, held_out, 'zero_shot_uar')}, retrieval@1 "
                f"{_each(record, held_out, 'retrieval_top1')} ({time.perf_counter() - start:.0f} s)")
    save_checkpoint(model, out)
    record = {"checkpoint": str(out), "sha256": file_sha256(out), "bytes": out.stat().st_size,
              "architecture": CLIP_ARCHITECTURES["tiny-synthetic"],
              "settings": dict(seed=seed, pairs=pairs, steps=steps, ramp_steps=ramp_steps, eval_pairs=eval_pairs,
                               batch_size=batch_size, frames=frames, lr=lr, weight_decay=weight_decay,
                               warmup_steps=warmup_steps, variation=variation, name_rate=name_rate,
                               first_pool=first_pool, drawing_share=drawing_share,
                               torch_threads=torch.get_num_threads()),
              "torch": torch.__version__, "seconds_generating": round(generated, 1),
              "seconds_total": round(time.perf_counter() - start, 1), "history": history, "final": history[-1]}
    out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    log(f">> wrote {out} ({record['bytes'] / 2**20:.1f} MiB, SHA-256 {record['sha256']}) in {record['seconds_total']:.0f} s")
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pairs", type=int, default=10000)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--ramp-steps", type=int, default=800, help="steps over which the nuisances rise to full")
    parser.add_argument("--eval-pairs", type=int, default=512)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--variation", type=float, default=1.0)
    parser.add_argument("--name-rate", type=float, default=0.25)
    parser.add_argument("--drawing-share", type=float, default=0.0,
                        help="share of pairs showing landmark drawings (0 in the shipped run; not measured yet)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (fixed: results depend on it)")
    a = parser.parse_args(argv)
    pretrain(a.out, seed=a.seed, pairs=a.pairs, steps=a.steps, ramp_steps=a.ramp_steps, eval_pairs=a.eval_pairs,
             eval_every=a.eval_every, batch_size=a.batch_size, frames=a.frames, lr=a.lr, variation=a.variation,
             name_rate=a.name_rate, drawing_share=a.drawing_share, threads=a.threads)


if __name__ == "__main__":
    main()
