"""What a researcher sees: progress lines, metrics.jsonl, TensorBoard, plots.

Only process 0 writes files. `metrics.jsonl` gets one JSON object per write with
`step`, `kind` ("train", "val", "summary") and scalars; after a resume the same
step may appear twice, and `read_metrics` keeps the last record.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import jax
from absl import logging

from libs.train import rundir

# Dense bf16 peak FLOP/s per device (datasheet numbers) for MFU; None when unknown.
PEAK_FLOPS = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5p": 459e12,
    "TPU v6 lite": 918e12,
}


def peak_flops(device: jax.Device | None = None) -> float | None:
    kind = (device or jax.devices()[0]).device_kind
    for name, flops in PEAK_FLOPS.items():
        if name.lower() in kind.lower():
            return flops
    return None


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class MetricWriter:
    """Appends scalars to `metrics.jsonl` and TensorBoard event files in `workdir`."""

    def __init__(self, workdir: str, enabled: bool | None = None):
        self.workdir = workdir
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._tb = None
        if self.enabled:
            os.makedirs(workdir, exist_ok=True)
            from tensorboardX import SummaryWriter  # Imported lazily: it pulls in protobuf.

            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), flush_secs=10)

    def write(self, step: int, kind: str, scalars: dict[str, Any]) -> None:
        if not self.enabled:
            return
        clean = {k: _to_float(v) for k, v in scalars.items()}
        rundir.append_jsonl(self.path, {"step": int(step), "kind": kind, **clean})
        for name, value in clean.items():
            if isinstance(value, float) and math.isfinite(value):
                self._tb.add_scalar(f"{kind}/{name}", value, int(step))
        self._tb.flush()  # A kill loses at most what came after the last write.

    def close(self) -> None:
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()


def _to_float(v: Any) -> Any:
    if isinstance(v, (str, bool)) or v is None:
        return v
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)


def read_metrics(path: str, kind: str | None = None) -> list[dict[str, Any]]:
    """Records of `metrics.jsonl`, last one per (kind, step), sorted by step."""
    latest: dict[tuple[str, int], dict[str, Any]] = {}
    for rec in rundir.read_jsonl(path):  # A line cut short by a kill is skipped; a corrupt one is an error.
        if kind is None or rec.get("kind") == kind:
            latest[(rec.get("kind"), rec["step"])] = rec
    return sorted(latest.values(), key=lambda r: (r["step"], r.get("kind", "")))


class Progress:
    """Formats the one progress line every long job prints: how far, how fast, ETA."""

    def __init__(self, total_steps: int, tokens_per_step: int, flops_per_token: float, peak: float | None):
        self.total_steps = total_steps
        self.tokens_per_step = tokens_per_step
        self.flops_per_token = flops_per_token
        self.peak = peak
        self._last_time: float | None = None
        self._last_step = 0

    def start(self, step: int) -> None:
        self._last_time, self._last_step = time.perf_counter(), step

    def line(self, step: int, loss: float, extra: str = "") -> tuple[str, dict[str, float]]:
        now = time.perf_counter()
        elapsed = now - (self._last_time or now)
        steps = max(step - self._last_step, 1)
        step_time = elapsed / steps if elapsed > 0 else float("nan")
        tok_s = self.tokens_per_step / step_time if elapsed > 0 else float("nan")
        self._last_time, self._last_step = now, step
        stats = {"step_time_s": step_time, "tokens_per_s": tok_s}
        parts = [
            f"step {step}/{self.total_steps}",
            f"loss {loss:.4f}",
            f"{tok_s:,.0f} tok/s" if math.isfinite(tok_s) else "- tok/s",
            f"{step_time * 1e3:.1f} ms/step" if math.isfinite(step_time) else "",
        ]
        if self.peak and math.isfinite(tok_s):
            mfu = tok_s * self.flops_per_token / (self.peak * jax.device_count())
            stats["mfu"] = mfu
            parts.append(f"MFU {100 * mfu:.1f}%")
        parts.append(f"ETA {format_duration(step_time * (self.total_steps - step))}")
        if extra:
            parts.append(extra)
        return " | ".join(p for p in parts if p), stats


def plot_losses(metrics_path: str, out_png: str, title: str = "") -> str | None:
    """Writes a train/validation loss curve PNG; returns its path (None if no data)."""
    train = read_metrics(metrics_path, "train")
    val = read_metrics(metrics_path, "val")
    if not train and not val:
        return None
    import matplotlib  # pylint: disable=import-outside-toplevel

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    if train:
        ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train", lw=1.2)
    if val:
        ax.plot([r["step"] for r in val], [r["loss"] for r in val], "o-", label="validation", lw=1.5, ms=3)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title or os.path.basename(os.path.dirname(os.path.abspath(metrics_path))))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)
    logging.info("wrote %s", out_png)
    return out_png
