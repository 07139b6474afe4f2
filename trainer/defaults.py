"""What the trainer's commands assume when a choice is left out: a manifest path's dataset name, and the model.

`--dataset` is a built-in dataset (mafw, dfew, ferv39k, sample) or the path of a manifest of
the user's own (`DATASET=path/to/mine.csv`); such a dataset is named after its file (`mine`),
which names its shard folder (`shards/mine`, as `make preprocess` writes it) and its run folders.

The model, when `--model` (MODEL=) is not given: `tiny` for the sample and for a manifest of
your own (the small CLIP the project ships, trained in minutes on a CPU); for MAFW, DFEW and
FERV39k it must be named, since which paper's model to train there is the experiment itself.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.inputs.datasets import DATASETS

DEFAULT_MODEL = "tiny"


def is_manifest_path(dataset: str) -> bool:
    return dataset not in DATASETS and (dataset.endswith(".csv") or "/" in dataset)


def dataset_name(dataset: str) -> str:
    """The name runs and shard folders use: a built-in name as it is, a manifest path's file stem."""
    return Path(dataset).stem if is_manifest_path(dataset) else dataset


def default_shards(dataset: str) -> str:
    return f"shards/{dataset_name(dataset)}"


def choose_model(model: str | None, dataset: str) -> tuple[str, str]:
    """(model, why); raises ValueError where the dataset needs the model named."""
    if model:
        return model, f"MODEL={model}"
    spec = DATASETS.get(dataset)
    if spec is not None and not spec.generated:
        from trainer.models import MODELS

        raise ValueError(f"name the model for {dataset}: MODEL=fineclip-b16 (FineCLIPER, the paper's model), "
                         f"MODEL=dferclip-b32 (DFER-CLIP), ... (--model; models: {', '.join(MODELS)})")
    whose = "the sample dataset" if spec is not None else "a dataset of your own"
    return DEFAULT_MODEL, (f"the default for {whose}; MODEL=fineclip-b16 trains FineCLIPER's model "
                           "(a GPU and OpenAI's CLIP weights)")
