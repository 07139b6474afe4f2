"""Measure training steps of a model: step time, clips/s and peak memory, on synthetic batches.

    python bench/trainer_step.py --model fineclip-b16 [--batch-sizes 32 16 8] [--steps 5] [--out FILE]

The model is built from the real architecture with random weights (no download), and a batch
as the loader yields it (uint8 B × 16 frames × 3 × 224², plus masks, landmark images and
descriptions where the model uses them; in pinned memory on a GPU host) goes through the
training step: `trainer.data.to_model_inputs` (to the device, float conversion and CLIP
normalisation there), forward, backward and an AdamW step; bf16 autocast on GPU, float32 on
CPU. `step_s` is the whole step; `inputs_s` the to_model_inputs part of it. Larger batch sizes
are tried first; one that runs out of memory is recorded as such and the next is tried. Data
loading is not part of this measurement (see the loader benchmark).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from pipeline.inputs.datasets import DATASETS
from trainer.data import to_model_inputs
from trainer.models import build_model


def synthetic_batch(model, batch_size: int, frames: int, size: int, device: torch.device) -> dict:
    """A batch as trainer.data's loader yields it: uint8 images on the CPU, pinned when the step runs on a GPU."""
    shape = (batch_size, frames, 3, size, size)
    generator = torch.Generator().manual_seed(0)

    def images() -> torch.Tensor:
        x = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
        return x.pin_memory() if device.type == "cuda" else x

    batch = {"frames": images(), "labels": torch.arange(batch_size) % 7,
             "descriptions": ["The brows lift and the jaw drops, then the mouth closes."] * batch_size}
    for name in ("masks", "landmarks"):
        if name in model.inputs:
            batch[name] = images()
    return batch


def measure(name: str, batch_size: int, frames: int, steps: int, device: torch.device) -> dict:
    model = build_model(name, list(DATASETS["dfew"].classes), pretrained=False).to(device)
    size = model.input_resolution
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" else nullcontext
    batch = synthetic_batch(model, batch_size, frames, size, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, input_times = [], []
    for step in range(steps + 1):   # the first step warms up kernels and allocator
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        inputs = to_model_inputs(batch, device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        converted = time.perf_counter()
        with autocast():
            loss = model(inputs)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if step:
            times.append(time.perf_counter() - start)
            input_times.append(converted - start)
    step_s = sorted(times)[len(times) // 2]
    return {"model": name, "batch_size": batch_size, "frames": frames, "image_size": size,
            "step_s": round(step_s, 4), "inputs_s": round(sorted(input_times)[len(input_times) // 2], 5),
            "clips_per_s": round(batch_size / step_s, 2),
            "peak_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda"
            else None, "trainable_parameters": model.count_trainable(), "loss": loss.item()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="fineclip-b16")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 16, 8])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/results/trainer_step.json"))
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    runs = []
    for batch_size in args.batch_sizes:
        try:
            runs.append(measure(args.model, batch_size, args.frames, args.steps, device))
            print(json.dumps(runs[-1]))
        except torch.OutOfMemoryError:
            runs.append({"model": args.model, "batch_size": batch_size, "out_of_memory": True})
            print(f"batch {batch_size}: out of memory")
            torch.cuda.empty_cache()
    report = {"benchmark": "trainer_step", "device": torch.cuda.get_device_name(0) if device.type == "cuda"
              else platform.processor() or platform.machine(), "torch": torch.__version__,
              "dtype": "bfloat16 autocast" if device.type == "cuda" else "float32", "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
