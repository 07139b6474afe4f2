"""Training batches are mixed whatever the manifest order (FIDELITY D3).

FERV39k's manifest is sorted by scene, then class, and the pipeline writes 64-clip shards in
manifest order. The measurement runs the loader's own ordering code (`trainer.data.epoch_samples`:
the epoch's shard permutation, the split over loader workers, `interleave`, the validation
filter and the shuffle buffer) on the real manifest's training labels, cut into shards by the
pipeline's own `plan_shards`, and takes batches of 16 per worker as a DataLoader over an
IterableDataset does. `pytest -s` prints the numbers.
"""

import dataclasses
import random
from collections import Counter
from types import SimpleNamespace

import pytest
import torch

from pipeline.inputs.manifest import load_manifest, sample_key
from pipeline.run.stages import plan_shards
from trainer.data import DataConfig, ShardClips, epoch_samples, interleave, is_validation, make_loader

SHARD_SIZE = 64        # the pipeline's default for real datasets (pipeline/preprocess.py)
BATCH = 16
WORKERS = 2
EPOCHS = 3


@pytest.fixture(scope="module")
def ferv39k_training_shards() -> list[list[dict]]:
    """FERV39k's training shards as the pipeline plans them: lists of {"__key__", "label"}, manifest order."""
    manifest = load_manifest("ferv39k")
    classes = list(manifest.classes)
    shards = []
    for job in plan_shards(manifest, SHARD_SIZE):
        if job.partition != "test":            # FERV39k: every partition but "test" trains (fold_partitions)
            shards.append([{"__key__": sample_key(row["clip_id"]), "label": classes.index(row["label"])}
                           for row in job.rows])
    return shards


def distinct_per_batch(labels: list[int]) -> list[int]:
    """Distinct classes in each full batch of `labels`, cut as the DataLoader batches one worker's stream."""
    return [len(set(labels[i:i + BATCH])) for i in range(0, len(labels) - BATCH + 1, BATCH)]


def loader_batches(shards: list[list[dict]], config: DataConfig, epoch: int, processes: int,
                   monkeypatch) -> list[list[int]]:
    """The labels each of `processes` loader workers yields in `epoch`, in order. The shard split over
    DDP ranks r of N with W workers each is the split over N·W workers (`shards_for_this_process`)."""
    keep = lambda raw: not is_validation(raw["__key__"], config.val_fraction, config.seed)  # noqa: E731
    streams = []
    for worker in range(processes):
        with monkeypatch.context() as patch:   # what a DataLoader worker process sees
            patch.setattr(torch.utils.data, "get_worker_info",
                          lambda worker=worker: SimpleNamespace(id=worker, num_workers=processes))
            streams.append([raw["label"] for raw in epoch_samples(
                list(range(len(shards))), lambda i: iter(shards[i]), config, epoch, train=True, keep=keep)])
    return streams


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


@pytest.mark.parametrize("processes", [WORKERS, 8 * WORKERS], ids=["1 GPU x 2 workers", "8 GPUs x 2 workers"])
def test_batches_hold_as_many_classes_as_a_random_permutation(ferv39k_training_shards, processes, monkeypatch):
    shards = ferv39k_training_shards
    total = sum(map(len, shards))
    assert len(shards) > 400 and total > 28_000
    # the premise: a shard is nearly one class
    purity = mean(Counter(s["label"] for s in shard).most_common(1)[0][1] / len(shard) for shard in shards)
    config = DataConfig(shards="unused", batch_size=BATCH, workers=WORKERS)
    assert config.open_shards > 1                      # the default mixes

    results = {}
    for open_shards in (1, config.open_shards):
        run = dataclasses.replace(config, open_shards=open_shards)
        counts, seen = [], []
        for epoch in range(EPOCHS):
            streams = loader_batches(shards, run, epoch, processes, monkeypatch)
            seen.append(sorted(label for stream in streams for label in stream))
            counts += [n for stream in streams for n in distinct_per_batch(stream)]
        results[open_shards] = mean(counts)
        assert seen[0] == seen[1] == seen[2]           # the same clips every epoch
    # a random permutation of the same (training, non-validation) labels
    keep = [s["label"] for shard in shards for s in shard
            if not is_validation(s["__key__"], config.val_fraction, config.seed)]
    assert len(keep) == len(seen[0]) and sorted(keep) == seen[0]   # every training clip exactly once
    counts = []
    for epoch in range(EPOCHS):
        permutation = keep[:]
        random.Random(epoch).shuffle(permutation)
        counts += distinct_per_batch(permutation)
    random_mean = mean(counts)

    print(f"\nFERV39k training partition: {total} clips ({len(keep)} after the validation split), "
          f"{len(shards)} shards of {SHARD_SIZE}, {purity:.0%} of a shard is its main class; batches of "
          f"{BATCH} from {processes} loader processes, shuffle buffer {config.shuffle_buffer}, {EPOCHS} epochs")
    print(f"  mean distinct classes per batch: random permutation {random_mean:.2f}")
    for open_shards, value in results.items():
        print(f"  open_shards={open_shards}{' (the former loader)' if open_shards == 1 else ''}: "
              f"{value:.2f} ({value / random_mean:.0%} of the permutation's)")
    old, new = results[1], results[config.open_shards]
    assert new >= 0.9 * random_mean                    # the acceptance bound
    assert old < 0.9 * random_mean                     # which the sequential reading fails


def test_interleave_is_a_seeded_merge_that_keeps_every_item_once():
    streams = [[(s, i) for i in range(n)] for s, n in enumerate([5, 0, 7, 1, 3, 9, 2])]
    flat = [x for stream in streams for x in stream]
    for open_shards in (2, 3, 16):
        out = list(interleave(iter(streams), open_shards, random.Random(1)))
        assert sorted(out) == sorted(flat) and out != flat
        for s, stream in enumerate(streams):        # each stream's own order kept
            assert [x for x in out if x[0] == s] == stream
        assert out == list(interleave(streams, open_shards, random.Random(1)))
        assert out != list(interleave(streams, open_shards, random.Random(2)))
    assert list(interleave(streams, 1, random.Random(1))) == flat   # 1: one after another
    # streams are opened lazily: open_shards of them to begin with, the next one when one ends
    opened, lazy = [], [[1, 2], [3], [4, 5], [6], [7, 8]]

    def stream(s):
        opened.append(s)
        return iter(lazy[s])

    merged = interleave((stream(s) for s in range(len(lazy))), 3, random.Random(0))
    first = next(merged)
    assert opened == [0, 1, 2]                         # all three non-empty: none has ended yet
    assert sorted([first, *merged]) == list(range(1, 9)) and opened == [0, 1, 2, 3, 4]


def test_every_training_clip_once_per_epoch_from_real_shards(sample_shards):
    """Real shards, two loader worker processes, shards read 2 at a time: each training clip exactly
    once per epoch, a different order each epoch; evaluation streams keep shard order."""
    out, _ = sample_shards
    config = DataConfig(shards=str(out), fold=1, num_frames=2, image_size=32, batch_size=3, workers=2,
                        use_masks=False, use_landmarks=False, open_shards=2)
    sequential = dataclasses.replace(config, open_shards=1, shuffle_buffer=0, workers=0)
    expected = [e["key"] for e in ShardClips(sequential, "train")]
    assert len(ShardClips(sequential, "train").shards) > 2 * 2   # a worker's share: more shards than open at once
    loader = make_loader(config, "train")
    epochs = []
    for epoch in range(2):
        loader.dataset.set_epoch(epoch)
        epochs.append([key for batch in loader for key in batch["keys"]])
    for keys in epochs:
        assert sorted(keys) == sorted(expected) and len(set(keys)) == len(keys)
    assert epochs[0] != epochs[1] and epochs[0] != expected
    for split in ("val", "test"):
        assert [e["key"] for e in ShardClips(dataclasses.replace(config, workers=0), split)] == \
            [e["key"] for e in ShardClips(dataclasses.replace(sequential, shuffle_buffer=64), split)]


def test_open_shards_one_is_the_former_sequential_reading(sample_shards):
    """open_shards=1 reads each worker's shards one after another, as the loader did before."""
    out, _ = sample_shards
    config = DataConfig(shards=str(out), fold=1, num_frames=2, image_size=32, workers=0, use_masks=False,
                        use_landmarks=False, open_shards=1, shuffle_buffer=0)
    dataset = ShardClips(config, "train")
    from pipeline.shards.reader import read_shard, shards_for_this_process

    shard_order = [clip.key for url in shards_for_this_process(dataset.shards, config.seed, 0, shuffle=True)
                   for clip in read_shard(url) if dataset._keep(clip.key)]
    assert [e["key"] for e in dataset] == shard_order
    with pytest.raises(ValueError, match="open_shards"):
        DataConfig(shards=str(out), open_shards=0)
