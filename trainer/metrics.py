"""Evaluation metrics of DFER and their plots: UAR, WAR, per-class recall, confusion matrix.

UAR (unweighted average recall) is the mean of the per-class recalls, so every class counts
the same however rare; WAR (weighted average recall) is plain accuracy. Classes absent from
the evaluated split are left out of UAR (their recall is undefined) and listed as such.

Test clips that failed preprocessing (no face, an unreadable file: the shards' status tables)
are not in the shards, but they are in the published test lists, so they stay in the
denominators: each counts as a wrong answer (`unscored`), and the metrics say how many, with
the figures over the scored clips alone beside them (`scored_only`). So does a test clip that
the shards hold but the loader could not read (a damaged sample, a tar cut short): every ok
clip of the status tables that no rank scored counts as wrong too (`failed_in_loader`).
"""

from __future__ import annotations

from pathlib import Path

import json

import numpy as np
import torch
import torch.distributed as dist

from trainer.data import to_model_inputs


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """C×C counts, rows = true class, columns = predicted class."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (np.asarray(labels, np.int64), np.asarray(predictions, np.int64)), 1)
    return matrix


def _uar_war(matrix: np.ndarray, unscored: np.ndarray) -> tuple[float, float, np.ndarray]:
    """UAR and WAR (%) of a confusion matrix plus per-class counts of clips scored as wrong, and the recalls."""
    support = matrix.sum(axis=1) + unscored
    recall = np.divide(np.diag(matrix), support, out=np.full(len(matrix), np.nan), where=support > 0)
    present = support > 0
    uar = float(100 * recall[present].mean()) if present.any() else 0.0
    return uar, float(100 * np.trace(matrix) / max(support.sum(), 1)), recall


def recognition_metrics(labels: np.ndarray, predictions: np.ndarray, classes: list[str],
                        unscored: np.ndarray | list[int] | None = None) -> dict:
    """UAR, WAR (in %), per-class recall (None where the class has no sample) and the confusion matrix
    of the scored clips. `unscored` are the labels of clips with no prediction (failed preprocessing):
    each counts as wrong in UAR and WAR, and `unscored`/`scored_only` report them."""
    matrix = confusion_matrix(labels, predictions, len(classes))
    missing = np.bincount(np.asarray(unscored if unscored is not None else [], np.int64), minlength=len(classes))
    uar, war, recall = _uar_war(matrix, missing)
    scored_uar, scored_war, _ = _uar_war(matrix, np.zeros_like(missing))
    return {
        "uar": uar, "war": war,
        "samples": int(matrix.sum() + missing.sum()),
        "unscored": int(missing.sum()),
        "unscored_per_class": {c: int(n) for c, n in zip(classes, missing) if n},
        "scored_only": {"uar": scored_uar, "war": scored_war, "samples": int(matrix.sum())},
        "per_class_recall": {c: (None if np.isnan(r) else round(float(100 * r), 2)) for c, r in zip(classes, recall)},
        "confusion_matrix": matrix.tolist(),
    }


def unscored_test_labels(shard_dir: Path | str, partitions: list[str], classes: list[str]) -> list[int]:
    """Class indices of the clips of `partitions` that failed preprocessing, from the status tables
    of the complete shards listed in index.json (docs/shard-format.md). Rows of other classes are ignored."""
    shard_dir = Path(shard_dir)
    index = json.loads((shard_dir / "index.json").read_text())
    position = {c: i for i, c in enumerate(classes)}
    labels = []
    for shard in index.get("shards", []):
        if shard["partition"] not in partitions or not shard.get("failed"):
            continue
        for line in (shard_dir / f"{shard['name']}.status.jsonl").read_text().splitlines():
            row = json.loads(line)
            if row["status"] != "ok" and row["label"] in position:
                labels.append(position[row["label"]])
    return labels


def expected_test_clips(shard_dir: Path | str, partitions: list[str], classes: list[str]) -> dict[str, int]:
    """Sample key -> class index of every clip of `partitions` that preprocessing wrote (status ok in
    the complete shards listed in index.json), of the classes in `classes`: what a test pass must score."""
    from pipeline.inputs.manifest import sample_key

    shard_dir = Path(shard_dir)
    index = json.loads((shard_dir / "index.json").read_text())
    position = {c: i for i, c in enumerate(classes)}
    expected = {}
    for shard in index.get("shards", []):
        if shard["partition"] not in partitions:
            continue
        for line in (shard_dir / f"{shard['name']}.status.jsonl").read_text().splitlines():
            row = json.loads(line)
            if row["status"] == "ok" and row["label"] in position:
                expected[sample_key(str(row["clip_id"]))] = position[row["label"]]
    return expected


def plot_confusion(matrix: np.ndarray, classes: list[str], path: Path, title: str = "") -> Path:
    """A row-normalised confusion matrix with counts, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix)
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = 1.2 + 0.55 * len(classes)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(classes)):
        for j in range(len(classes)):
            if matrix[i, j]:
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center",
                        color="white" if rates[i, j] > 0.5 else "black", fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.046, label="recall")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_curves(history: list[dict], path: Path) -> Path:
    """Training loss and validation UAR/WAR per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot(epochs, [h["train_loss"] for h in history], marker="o")
    left.set_xlabel("epoch")
    left.set_ylabel("training loss")
    for key in ("val_uar", "val_war"):
        right.plot(epochs, [h.get(key) for h in history], marker="o", label=key.replace("val_", "validation "))
    right.set_xlabel("epoch")
    right.set_ylabel("%")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader, device: torch.device, classes: list[str], autocast,
             normalise: str = "clip", unscored: list[int] | None = None,
             expected: dict[str, int] | None = None) -> dict:
    """The model's metrics on every clip of `loader` (gathered over DDP ranks), with `unscored` clip
    labels counted as wrong, and so every clip of `expected` (key -> label: `expected_test_clips`)
    that no rank scored (`failed_in_loader`); `description_loss` too when the model reports one
    (zero-shot runs select on it)."""
    model.eval()
    labels, predictions, keys = [], [], []
    description_sum, described = 0.0, 0
    for batch in loader:
        labels.append(batch["labels"])
        inputs = to_model_inputs({k: v for k, v in batch.items() if k != "labels"}, device, normalise=normalise)
        with autocast():
            out = model(inputs)
        predictions.append(out["logits"].float().argmax(-1).cpu())
        if "description" in out.get("parts", {}):
            description_sum += float(out["parts"]["description"]) * len(batch["keys"])
            described += len(batch["keys"])
        keys += batch["keys"]
    labels_t = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long)
    predictions_t = torch.cat(predictions) if predictions else torch.zeros(0, dtype=torch.long)
    if dist.is_initialized():  # every rank saw a disjoint share of the shards
        gathered = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, (labels_t.tolist(), predictions_t.tolist(), description_sum, described,
                                          keys))
        labels_t = torch.tensor([x for part in gathered for x in part[0]], dtype=torch.long)
        predictions_t = torch.tensor([x for part in gathered for x in part[1]], dtype=torch.long)
        description_sum, described = sum(p[2] for p in gathered), sum(p[3] for p in gathered)
        keys = [key for part in gathered for key in part[4]]
    model.train()
    lost = sorted(set(expected or {}) - set(keys))
    metrics = recognition_metrics(labels_t.numpy(), predictions_t.numpy(), classes,
                                  list(unscored or []) + [expected[key] for key in lost])
    metrics["failed_in_loader"] = len(lost)
    metrics["failed_in_loader_keys"] = lost[:20]
    metrics["description_loss"] = description_sum / described if described else None
    return metrics
