"""Run under torchrun by tests/test_trainer_loop.py: one DFER-CLIP reference-recipe run on the shards
given, then each rank's first training draws (frames and augmentation of its first clips, twice, to
show the epoch replays), gathered and written by rank 0 to the JSON file given.

    torchrun --nproc-per-node 2 tests/ddp_rank_draws.py SHARDS RUNS_DIR OUT.json
"""

import json
import sys

import torch.distributed as dist

from trainer.config import resolve
from trainer.data import ShardClips, read_index
from trainer.train import setup_distributed, shutdown_distributed, train


def first_draws(config, world: int, count: int = 4) -> list[dict]:
    classes = read_index(config.shard_dir)["classes"]
    data = config.data_config(config.build_model(classes), world)
    clips = iter(ShardClips(data, "train", classes))
    return [{"key": e["key"], "frames": e["frame_indices"], "augmentation": e["augmentation"]}
            for e, _ in zip(clips, range(count))]


def main(shards: str, runs_dir: str, out: str) -> None:
    rank, world, _ = setup_distributed()
    config = resolve("tiny-random-dferclip", "sample", {
        "recipe": "reference", "class_descriptions": "ours", "shards": shards, "runs_dir": runs_dir,
        "epochs": 1, "workers": 0, "num_frames": 16, "paper_protocol": False})
    train(config)
    draws = {"rank": rank, "world": world, "per_rank_batch": config.rank_batch(world),
             "first": first_draws(config, world), "again": first_draws(config, world)}
    gathered = [None] * world
    dist.all_gather_object(gathered, draws)
    if rank == 0:
        with open(out, "w") as f:
            json.dump(gathered, f)
    shutdown_distributed()


if __name__ == "__main__":
    main(*sys.argv[1:4])
