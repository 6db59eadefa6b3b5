"""Classification metrics and the two plots the README shows."""
from __future__ import annotations

import torch


def confusion_matrix(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes, num_classes) counts; rows are true classes, columns predictions."""
    idx = labels.long().cpu() * num_classes + preds.long().cpu()
    return torch.bincount(idx, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def summarize(cm: torch.Tensor, class_names: list[str]) -> dict:
    cm = cm.double()
    tp = cm.diag()
    precision = tp / cm.sum(0).clamp(min=1)
    recall = tp / cm.sum(1).clamp(min=1)
    f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
    return {
        "accuracy": round(100.0 * tp.sum().item() / max(cm.sum().item(), 1), 4),
        "num_images": int(cm.sum().item()),
        "per_class": {
            name: {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4), "support": int(s)}
            for name, p, r, f, s in zip(class_names, precision.tolist(), recall.tolist(), f1.tolist(),
                                        cm.sum(1).tolist())
        },
        "confusion_matrix": cm.long().tolist(),
    }


def format_report(summary: dict) -> str:
    names = list(summary["per_class"])
    w = max(8, *(len(n) for n in names))
    lines = [f"accuracy: {summary['accuracy']:.2f}% on {summary['num_images']} images", "",
             f"{'class':>{w}}  precision  recall     f1  support"]
    for n, m in summary["per_class"].items():
        lines.append(f"{n:>{w}}  {m['precision']:9.4f}  {m['recall']:6.4f}  {m['f1']:.4f}  {m['support']:7d}")
    lines += ["", "confusion matrix (rows: true, columns: predicted):"]
    lines.append(" " * (w + 1) + " ".join(f"{i:>5d}" for i in range(len(names))))
    for i, (n, row) in enumerate(zip(names, summary["confusion_matrix"])):
        lines.append(f"{n[:w]:>{w}} " + " ".join(f"{v:>5d}" for v in row))
    return "\n".join(lines)


def plot_confusion_matrix(cm: list[list[int]], class_names: list[str], path: str, title: str = "") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    a = np.asarray(cm)
    fig, ax = plt.subplots(figsize=(7, 6))
    norm = a / np.maximum(a.sum(1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            ax.text(j, i, str(a[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_history(history: list[dict], path: str, title: str = "") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.plot(ep, [h["train_loss"] for h in history], "o-", label="train loss")
    a1.plot(ep, [h["test_loss"] for h in history], "o-", label="test loss")
    a1.set_xlabel("epoch")
    a1.legend()
    a2.plot(ep, [h["train_acc"] for h in history], "o-", label="train accuracy (augmented)")
    a2.plot(ep, [h["test_acc"] for h in history], "o-", label="test accuracy")
    a2.set_xlabel("epoch")
    a2.set_ylabel("%")
    a2.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
