"""Training output people look at: a CSV per epoch, TensorBoard events, a PNG of the curves."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any

CSV_NAME = "metrics.csv"
PLOT_NAME = "curves.png"


class MetricsLog:
    """Collects one row of metrics per epoch and writes them out (on rank 0 only).

    The CSV is rewritten whole from :attr:`history` each time, so a resumed run (whose
    history comes back from the checkpoint) produces the same file as an uninterrupted one.
    """

    def __init__(self, out_dir: str | Path, *, enabled: bool = True, tensorboard: bool = True):
        self.out_dir = Path(out_dir)
        self.enabled = enabled
        self.history: list[dict[str, Any]] = []
        self._tensorboard = tensorboard
        self._writer = None

    def add(self, row: dict[str, Any]) -> None:
        """Record one epoch's row and update the CSV and TensorBoard."""
        self.history.append(row)
        if not self.enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._write_csv()
        if self._tensorboard:
            if self._writer is None:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(self.out_dir / "tensorboard"))
            for key, value in row.items():
                if key not in ("epoch", "step") and isinstance(value, (int, float)):
                    self._writer.add_scalar(key, value, row["step"])
            self._writer.flush()

    def echo(self, row: dict[str, Any], epochs: int, images: float, seconds: float) -> None:
        """Print one line for an epoch on stderr, as PaddleClas and timm log: epoch, train
        loss, validation top-1/top-5 (when evaluated), learning rate, images/s, time."""
        if not self.enabled:
            return
        parts = [f"epoch {row['epoch']:g}/{epochs}", f"train loss {row['train_loss']:.4f}"]
        if "val_top1" in row:
            parts.append(f"val top-1 {row['val_top1']:.4f} top-5 {row['val_top5']:.4f}")
        parts += [f"lr {row['lr']:.3g}", f"{images / max(seconds, 1e-9):.0f} img/s"]
        parts.append(f"{seconds:.1f} s")
        print("  ".join(parts), file=sys.stderr, flush=True)

    def _write_csv(self) -> None:
        columns: list[str] = []
        for row in self.history:
            columns += [k for k in row if k not in columns]
        with open(self.out_dir / CSV_NAME, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.history)

    def plot(self) -> Path | None:
        """Save loss and top-1/top-5 curves against epochs as ``curves.png``."""
        if not self.enabled or not self.history:
            return None
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt

        epochs = [r["epoch"] for r in self.history]
        fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
        for key in ("train_loss", "val_loss"):
            ax_loss.plot(epochs, [r.get(key) for r in self.history], marker="o", label=key)
        for key in ("val_top1", "val_top5", "val_agreement"):
            if any(key in r for r in self.history):
                ax_acc.plot(epochs, [r.get(key) for r in self.history], marker="o", label=key)
        ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
        losses = [r[k] for r in self.history for k in ("train_loss", "val_loss") if r.get(k)]
        if losses and min(losses) > 0 and max(losses) > 5 * min(losses):
            # A first epoch far above the rest would flatten every later change on a linear
            # axis; on a log axis each keeps its share of the height.
            ax_loss.set_yscale("log")
        ax_acc.set(xlabel="epoch", ylabel="fraction", title="validation accuracy", ylim=(0, 1))
        for ax in (ax_loss, ax_acc):
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
        path = self.out_dir / PLOT_NAME
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
