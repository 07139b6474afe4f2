"""Write and stream WebDataset tar shards of ClipSamples, with no dependency on the trainer.

    from pipeline.shards.reader import ShardReader
    for clip in ShardReader("shards/mafw", partitions=["fold2", "fold3"]):
        frames = clip.frames([0, 8, 16])      # decodes only these three JPEGs
        print(clip.key, clip.label, clip.landmarks.shape, clip.description)

Nothing here imports torch: reading shards needs only numpy, OpenCV's JPEG decoder and the
standard library. Inside a PyTorch DataLoader (torch already imported by the caller), each
worker, and each DDP rank when torch.distributed is initialised, reads a disjoint subset of
the shards; docs/shard-format.md shows the small `IterableDataset` wrapper and collate
function a DataLoader needs. Writing and reading single shards (`ShardWriter`, `read_shard`,
`list_shards`, …) lives in `pipeline.shards.tar` and is re-exported here.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Iterator, Sequence

from pipeline.shards.format import ClipSample
from pipeline.shards.tar import (SHARD_SUFFIX, TMP_SUFFIX, ShardWriteError, ShardWriter,  # noqa: F401 (re-exported)
                                iter_tar_members, list_shards, read_shard, shard_name)


def _rank_and_worker() -> tuple[int, int, int, int]:
    """(rank, world size, DataLoader worker, workers): all 0/1 unless the caller runs torch."""
    torch = sys.modules.get("torch")  # never imported here: a reader without torch stays without it
    rank, world, worker, workers = 0, 1, 0, 1
    if torch is not None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        info = torch.utils.data.get_worker_info()
        if info is not None:
            worker, workers = info.id, info.num_workers
    return rank, world, worker, workers


def shards_for_this_process(shards: Sequence, seed: int = 0, epoch: int = 0, shuffle: bool = False) -> list:
    """The shards this process reads, by the one rule every reader of ours follows (this one and
    the trainer's loader): with `shuffle`, the epoch's seeded permutation (the same in every
    process), then DDP rank r of N and DataLoader worker w of W take every (N·W)-th shard from r·W + w."""
    shards = list(shards)
    if shuffle:
        random.Random(seed * 1_000_003 + epoch).shuffle(shards)
    rank, world, worker, workers = _rank_and_worker()
    return shards[rank * workers + worker::world * workers]


class ShardReader:
    """Stream ClipSamples from shards; splits shards across DDP ranks and DataLoader workers.

    With `shuffle_shards`, shard order is shuffled with a seed that depends on the epoch
    (`set_epoch`) before the split, so every rank and worker agrees on the permutation.
    """

    def __init__(self, source: str | Path | Sequence[str | Path], partitions: Sequence[str] | None = None,
                 shuffle_shards: bool = False, seed: int = 0):
        self.shards = list_shards(source, partitions)
        if not self.shards:
            raise FileNotFoundError(f"no shards found in {source}"
                                    + (f" for partitions {', '.join(partitions)}" if partitions else ""))
        self.shuffle_shards = shuffle_shards
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def my_shards(self) -> list[Path]:
        return shards_for_this_process(self.shards, self.seed, self.epoch, self.shuffle_shards)

    def __iter__(self) -> Iterator[ClipSample]:
        for shard in self.my_shards():
            yield from read_shard(shard)
