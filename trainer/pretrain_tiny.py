"""Pretrain a tiny CLIP (`make pretrain-tiny`): OpenAI's `clip.model.CLIP`, small, on synthetic pairs.

    python -m trainer.pretrain_tiny [--out runs/tiny-synthetic/tiny-synthetic.pt] [--seed 0] [--pairs N] [--epochs E]

The model is `clip.model.CLIP` with the "tiny-synthetic" hyper-parameters of
trainer/clip_loader.py, initialised by its own `initialize_parameters`. The data are the
video–caption pairs of trainer/synthetic_pairs.py. The objective is CLIP's: a symmetric
cross-entropy over the batch's video–caption cosines scaled by the learned `logit_scale`
(clamped at 100, as OpenAI's training code clamps it). A clip's embedding is the mean of its
frames' image embeddings (each step picks `frames` of the 8 rendered ones, in order).

Deterministic from `--seed`: pairs depend only on (seed, index), the batch order and frame
picks on a torch generator seeded from it. The result is saved as a plain fp16 state dict
(OpenAI's checkpoints are fp16 too) that `trainer.clip_loader.load_clip` reads like theirs;
the run's numbers (zero-shot accuracy on held-out prototype clips, caption retrieval) go to
a JSON file beside it.

Status (docs/training.md, "Pretraining a tiny CLIP"): it learns the action units on clean pairs
but not to ignore light and framing, so nothing is shipped yet (`SHIPPED_CLIPS` is empty).
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


def _make(args: tuple[int, int, int, float, float, float]):
    from trainer.synthetic_pairs import make_pair

    seed, index, frames, name_rate, variation, short_rate = args
    pair = make_pair(_WORKER["identity"], _WORKER["describer"], seed, index, frames_per_clip=frames,
                     name_rate=name_rate, variation=variation, short_rate=short_rate)
    return pair.frames, pair.caption, pair.label


def generate_pairs(seed: int, count: int, frames: int = 8, name_rate: float = 0.25, workers: int | None = None,
                   log=say, variation: float = 1.0, short_rate: float = 0.6, first: int = 0) -> tuple[np.ndarray, list[str], list[str | None]]:
    """Pairs `first` … `first + count - 1` of stream `seed`, in index order whatever the number of workers."""
    workers = workers or os.cpu_count() or 1
    start = time.perf_counter()
    jobs = [(seed, i, frames, name_rate, variation, short_rate) for i in range(first, first + count)]
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


def encode_clips(model: torch.nn.Module, clips: torch.Tensor) -> torch.Tensor:
    """Unit-norm clip embeddings of (B, K, S, S, 3) uint8 clips: the mean of the frames' image embeddings."""
    b, k = clips.shape[:2]
    frames = model.encode_image(clip_normalise(clips.permute(0, 1, 4, 2, 3)).flatten(0, 1)).view(b, k, -1)
    return F.normalize(frames.mean(1), dim=-1)


@torch.no_grad()
def evaluate(model: torch.nn.Module, clips: np.ndarray, tokens: torch.Tensor, labels: list[str | None],
             classes: list[str], batch: int = 256) -> dict[str, float]:
    """Zero-shot class accuracy on the prototype clips, and caption→clip retrieval top-1 in
    groups of 256 (chance 1/256); clips use all their frames."""
    model.eval()
    video = torch.cat([encode_clips(model, torch.from_numpy(clips[i:i + batch])) for i in range(0, len(clips), batch)])
    text = torch.cat([F.normalize(model.encode_text(tokens[i:i + batch]), dim=-1) for i in range(0, len(tokens), batch)])
    positive = read_label_templates(resolve_prompt_file("label_templates.yaml"))["positive"]   # FineCLIPER's prompt
    prompts = F.normalize(model.encode_text(tokenize([positive.format(label=c) for c in classes])), dim=-1)
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


def pretrain(out: Path, seed: int = 0, pairs: int = 5000, clean_pairs: int = 3000, eval_pairs: int = 512,
             epochs: int = 4, clean_steps: int = 400, batch_size: int = 64, frames: int = 4, lr: float = 3e-4,
             weight_decay: float = 0.1, warmup_steps: int = 20, variation: float = 1.0, name_rate: float = 0.25,
             threads: int | None = None, log=say) -> dict:
    """Two phases (a curriculum on the nuisances): `clean_steps` on `clean_pairs` pairs with no
    nuisance variation (fixed crop and light, no blur or JPEG loss) and short captions, then
    `epochs` passes over those and `pairs` more with the full `variation`. Without the clean
    phase the loss of a random CLIP sits at ln(batch) (docs/training.md)."""
    start = time.perf_counter()
    if threads:
        torch.set_num_threads(threads)
    classes = list(DATASETS["sample"].classes)
    log(f">> generating {clean_pairs} clean and {pairs} varied training pairs, 2 × {eval_pairs} held out (seed {seed})")
    clean = generate_pairs(seed, clean_pairs, name_rate=name_rate, variation=0.0, short_rate=1.0, log=log)
    varied = generate_pairs(seed, pairs, name_rate=name_rate, variation=variation, first=clean_pairs, log=log)
    held_out = {"clean": generate_pairs(seed + EVAL_SEED_OFFSET, eval_pairs, name_rate=0.0, variation=0.0, log=log),
                "varied": generate_pairs(seed + EVAL_SEED_OFFSET, eval_pairs, name_rate=0.0, variation=variation,
                                         first=eval_pairs, log=log)}
    generated = time.perf_counter() - start
    clips = np.concatenate([clean[0], varied[0]])
    tokens = tokenize(clean[1] + varied[1])
    held_tokens = {k: tokenize(v[1]) for k, v in held_out.items()}
    model = build_clip(seed)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                   {"params": rest, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98), eps=1e-6)
    steps_per_epoch = len(clips) // batch_size
    total = clean_steps + steps_per_epoch * epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup_steps)
                                                 * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    generator = torch.Generator().manual_seed(seed)
    clips_t = torch.from_numpy(clips)
    phases = [("clean", clean_pairs, -(-clean_steps * batch_size // clean_pairs), clean_steps)]
    phases += [(f"epoch {e + 1}/{epochs}", len(clips), 1, steps_per_epoch) for e in range(epochs)]
    history = []
    log(f">> pretraining: {total} steps of {batch_size} pairs, {frames} frames each ({clean_steps} clean first)")
    for name, pool, passes, steps in phases:
        if steps == 0:
            continue
        order = torch.cat([torch.randperm(pool, generator=generator) for _ in range(passes)])
        losses = []
        for step in range(steps):
            idx = order[step * batch_size:(step + 1) * batch_size]
            picks = torch.sort(torch.rand(len(idx), clips.shape[1], generator=generator).argsort(1)[:, :frames], 1).values
            batch = clips_t[idx[:, None], picks]
            video = encode_clips(model, batch)
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
        record = {"phase": name, "steps": steps, "loss": float(np.mean(losses))}
        for kind, (c, _, labels) in held_out.items():
            record[kind] = evaluate(model, c, held_tokens[kind], labels, classes)
        history.append(record)
        log(f"  {name}: loss {record['loss']:.3f}; held out, clean / varied: zero-shot UAR "
            f"{record['clean']['zero_shot_uar']:.3f} / {record['varied']['zero_shot_uar']:.3f}, retrieval@1 "
            f"{record['clean']['retrieval_top1']:.3f} / {record['varied']['retrieval_top1']:.3f} "
            f"({time.perf_counter() - start:.0f} s)")
    state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    with AtomicFile(out) as f:
        torch.save(state, f)
    record = {"checkpoint": str(out), "sha256": file_sha256(out), "bytes": out.stat().st_size,
              "architecture": CLIP_ARCHITECTURES["tiny-synthetic"],
              "settings": dict(seed=seed, pairs=pairs, clean_pairs=clean_pairs, eval_pairs=eval_pairs, epochs=epochs,
                               clean_steps=clean_steps, batch_size=batch_size, frames=frames, lr=lr,
                               weight_decay=weight_decay, warmup_steps=warmup_steps, variation=variation,
                               name_rate=name_rate, torch_threads=torch.get_num_threads()),
              "torch": torch.__version__, "seconds_generating": round(generated, 1),
              "seconds_total": round(time.perf_counter() - start, 1), "history": history, "final": history[-1]}
    out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    log(f">> wrote {out} ({record['bytes'] / 2**20:.1f} MiB, SHA-256 {record['sha256']}) in {record['seconds_total']:.0f} s")
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pairs", type=int, default=5000, help="pairs with the full nuisance variation")
    parser.add_argument("--clean-pairs", type=int, default=3000, help="pairs with none, for the first phase")
    parser.add_argument("--clean-steps", type=int, default=400)
    parser.add_argument("--eval-pairs", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--variation", type=float, default=1.0)
    parser.add_argument("--name-rate", type=float, default=0.25)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (fixed: results depend on it)")
    a = parser.parse_args(argv)
    pretrain(a.out, seed=a.seed, pairs=a.pairs, clean_pairs=a.clean_pairs, clean_steps=a.clean_steps,
             eval_pairs=a.eval_pairs, epochs=a.epochs, batch_size=a.batch_size, frames=a.frames, lr=a.lr,
             variation=a.variation, name_rate=a.name_rate, threads=a.threads)


if __name__ == "__main__":
    main()
