"""Evaluation metrics of DFER and their plots: UAR, WAR, per-class recall, confusion matrix.

UAR (unweighted average recall) is the mean of the per-class recalls, so every class counts
the same however rare; WAR (weighted average recall) is plain accuracy. Classes absent from
the evaluated split are left out of UAR (their recall is undefined) and listed as such.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from trainer.data import to_model_inputs


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """C×C counts, rows = true class, columns = predicted class."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (np.asarray(labels, np.int64), np.asarray(predictions, np.int64)), 1)
    return matrix


def recognition_metrics(labels: np.ndarray, predictions: np.ndarray, classes: list[str]) -> dict:
    """UAR, WAR (in %), per-class recall (None where the class has no sample) and the confusion matrix."""
    matrix = confusion_matrix(labels, predictions, len(classes))
    support = matrix.sum(axis=1)
    recall = np.divide(np.diag(matrix), support, out=np.full(len(classes), np.nan), where=support > 0)
    present = support > 0
    return {
        "uar": float(100 * recall[present].mean()) if present.any() else 0.0,
        "war": float(100 * np.trace(matrix) / max(matrix.sum(), 1)),
        "samples": int(matrix.sum()),
        "per_class_recall": {c: (None if np.isnan(r) else round(float(100 * r), 2)) for c, r in zip(classes, recall)},
        "confusion_matrix": matrix.tolist(),
    }


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
def evaluate(model: torch.nn.Module, loader, device: torch.device, classes: list[str], autocast) -> dict:
    model.eval()
    labels, predictions, keys = [], [], []
    for batch in loader:
        labels.append(batch["labels"])
        inputs = to_model_inputs({k: v for k, v in batch.items() if k != "labels"}, device)
        with autocast():
            logits = model(inputs)["logits"]
        predictions.append(logits.float().argmax(-1).cpu())
        keys += batch["keys"]
    labels_t, predictions_t = torch.cat(labels), torch.cat(predictions)
    if dist.is_initialized():  # every rank saw a disjoint share of the shards
        gathered = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, (labels_t.tolist(), predictions_t.tolist()))
        labels_t = torch.tensor([x for part in gathered for x in part[0]])
        predictions_t = torch.tensor([x for part in gathered for x in part[1]])
    model.train()
    return recognition_metrics(labels_t.numpy(), predictions_t.numpy(), classes)
