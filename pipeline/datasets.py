"""The datasets the toolkit knows: their classes, partitions and the layouts users have on disk.

This is the one place class lists live. Class order is the label index order used by the
trainer; it follows the convention of the DFER-CLIP annotation files (happiness, sadness,
neutral, anger, surprise, disgust, fear, then MAFW's four extra classes), which is NOT the
official order of either MAFW or DFEW. Everything the project writes stores class *names*.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

BASIC_EMOTIONS = ("happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear")
MAFW_EXTRA = ("contempt", "anxiety", "helplessness", "disappointment")
FOLDS = tuple(f"fold{k}" for k in range(1, 6))

MANIFEST_DIR = Path(__file__).resolve().parent.parent / "manifests"


@dataclass(frozen=True)
class DatasetSpec:
    """What the manifest loader and the pipeline need to know about one dataset."""

    name: str
    classes: tuple[str, ...]
    partitions: tuple[str, ...]
    # Where a clip may live under DATA_ROOT, tried in order after the manifest's own path.
    # `{clip_id}` is the manifest's clip id. Layouts users actually have are listed here,
    # so the same manifest works for whichever form of the dataset was downloaded.
    layouts: tuple[str, ...] = ()

    @property
    def manifest_path(self) -> Path:
        return MANIFEST_DIR / f"{self.name}.csv"


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="mafw",
            classes=BASIC_EMOTIONS + MAFW_EXTRA,
            partitions=FOLDS,
            layouts=(
                "data/clips/{clip_id}.mp4",
                "data/faces/{clip_id}",
                "clips/{clip_id}.mp4",
                "faces/{clip_id}",
                "{clip_id}.mp4",
                "{clip_id}",
            ),
        ),
        DatasetSpec(
            name="dfew",
            classes=BASIC_EMOTIONS,
            partitions=FOLDS,
            layouts=(
                "Clip/original/{clip_id}.mp4",
                "Clip/original/{clip_id}.avi",
                "Clip/clip_224x224/{clip_id}.mp4",
                "Clip/clip_224x224/{clip_id}",
                "DFEW_Frame_Face/{clip_id}",
                "clip_224x224/{clip_id}",
                "{clip_id}.mp4",
                "{clip_id}.avi",
                "{clip_id}",
            ),
        ),
        DatasetSpec(
            name="ferv39k",
            classes=BASIC_EMOTIONS,
            partitions=("train", "test"),
            # FERV39k clip ids are <scene>/<Emotion>/<4-digit id>, e.g. Action/Happy/0267.
            layouts=("2_ClipsforFaceCrop/{clip_id}", "{clip_id}"),
        ),
    )
}


def dataset_spec(name: str) -> DatasetSpec:
    """The registry entry for a built-in dataset; a clear error for an unknown name."""
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(sorted(DATASETS))
        raise KeyError(f"unknown dataset {name!r}: built-in datasets are {known}, "
                       "or pass the path of a manifest file") from None
