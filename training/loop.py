"""What the training loops share: the accelerator, trackers, checkpoints and resume.

- `make_accelerator(cfg)`: CPU/GPU, bf16 autocast (`--bf16`), and experiment trackers
  (`--tracker auto`: TensorBoard when installed, plus W&B when installed and configured
  through WANDB_API_KEY / WANDB_MODE; `none` for metrics.jsonl only).
- `TrackedRunLog`: the stage's RunLog (progress bar, metrics.jsonl, callback) that also
  sends every numeric metric to the trackers; their files end up in the model directory
  (`tensorboard/`) beside metrics.jsonl.
- `Checkpoints`: `--checkpoint-every N` saves the accelerator state (model or adapters,
  optimiser, scheduler, RNG) plus the loop's own position to `.NAME.checkpoints/` beside
  the output, atomically; `--resume` continues from the newest one (same config), so a
  retried job does not start from zero. Checkpoints are removed once the model is saved.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from training.outputs import RunLog, announce_device

STATE = "loop_state.json"


def available_trackers(choice: str) -> list[str]:
    """Tracker names for accelerate from `--tracker` (auto | none | comma list)."""
    if choice == "none":
        return []
    if choice != "auto":
        return [t.strip() for t in choice.split(",") if t.strip()]
    found = []
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        found.append("tensorboard")
    configured = os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE")
    if importlib.util.find_spec("wandb") and configured:
        found.append("wandb")
    return found


def tracker_dir(out: str | Path) -> Path:
    """Where trackers write while the run is live: `.NAME.tracking/` beside the output."""
    out = Path(out)
    return out.parent / f".{out.name}.tracking"


def make_accelerator(cfg: Any, stage: str) -> Accelerator:
    """The stage's accelerator: device, mixed precision, trackers, gradient accumulation."""
    trackers = available_trackers(getattr(cfg, "tracker", "none"))
    accelerator = Accelerator(
        # CPU said outright when there is no accelerator: accelerate joins several launched
        # processes into one gloo group only then, else each trains alone on all the data
        cpu=cfg.cpu or not torch.accelerator.is_available(),
        mixed_precision="bf16" if getattr(cfg, "bf16", False) else "no",
        log_with=trackers or None,
        project_dir=str(tracker_dir(cfg.out)) if trackers else None,
    )
    if trackers:
        config = {k: v for k, v in vars(cfg).items() if isinstance(v, (int, float, str, bool))}
        accelerator.init_trackers(stage, config=config)
    if accelerator.is_main_process:
        announce_device(describe_device(accelerator))
    return accelerator


def describe_device(accelerator: Accelerator) -> str:
    """Where the stage trains, in words: "CPU" or "GPU (NVIDIA H100 …)", with the count of
    processes when there are several."""
    device = accelerator.device
    where = (f"GPU ({torch.cuda.get_device_name(device)})" if device.type == "cuda"
             else device.type.upper())
    n = accelerator.num_processes
    return where if n == 1 else f"{where} × {n} processes"


class TrackedRunLog(RunLog):
    """RunLog that also logs numeric metrics to the accelerator's trackers."""

    def __init__(
        self,
        out: str | Path,
        total: int,
        desc: str,
        callback: Any,
        accelerator: Accelerator,
        history: list[dict[str, Any]] | None = None,
    ):
        super().__init__(out, total, desc, callback, accelerator.is_main_process)
        self.accelerator, self.out = accelerator, Path(out)
        if history and self._file:  # resumed: the rows before the checkpoint come back
            for row in history:
                self._file.write(json.dumps(row) + "\n")
            self._file.flush()
            self.history = list(history)
            self._bar.update(max((r["step"] for r in history), default=0))

    def log(self, step: int, metrics: dict[str, Any], advance: int = 1) -> None:
        super().log(step, metrics, advance)
        numeric = {
            k: float(v)
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        if numeric and self.accelerator.trackers:
            self.accelerator.log(numeric, step=step)

    def finish_into(self, directory: Path) -> None:
        super().finish_into(directory)
        self._end_trackers(directory)

    def close(self) -> None:
        super().close()
        self._end_trackers(None)

    def _end_trackers(self, directory: Path | None) -> None:
        if not self.accelerator.trackers:
            return
        self.accelerator.end_training()
        live = tracker_dir(self.out)
        if directory is not None and live.exists():
            shutil.move(str(live), str(directory / "tensorboard"))


class Checkpoints:
    """Periodic accelerator checkpoints beside the output, and resuming from the newest."""

    def __init__(self, out: str | Path, every: int, accelerator: Accelerator):
        out = Path(out)
        self.root = out.parent / f".{out.name}.checkpoints"
        self.every, self.accelerator = every, accelerator

    def due(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0

    def latest(self) -> Path | None:
        if not self.root.exists():
            return None
        done = sorted(p for p in self.root.iterdir() if (p / STATE).exists())
        return done[-1] if done else None

    def save(self, step: int, state: dict[str, Any], tensors: dict[str, Any] | None = None) -> None:
        """Write checkpoint `step` atomically, then drop older ones."""
        self.accelerator.wait_for_everyone()
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.root / f"step-{step:09d}"
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.root))
        self.accelerator.save_state(str(tmp))
        if self.accelerator.is_main_process:
            if tensors is not None:
                torch.save(tensors, tmp / "extra.pt")
            (tmp / STATE).write_text(json.dumps({"step": step, **state}, default=str))
            if target.exists():
                shutil.rmtree(target)
            os.rename(tmp, target)
            for old in self.root.iterdir():
                if old != target:
                    shutil.rmtree(old, ignore_errors=True)
        self.accelerator.wait_for_everyone()

    def load(self) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
        """Restore the newest checkpoint into the prepared objects; its loop state, or None."""
        path = self.latest()
        if path is None:
            return None
        self.accelerator.load_state(str(path))
        extra_path = path / "extra.pt"
        extra = torch.load(extra_path, weights_only=False) if extra_path.exists() else None
        return json.loads((path / STATE).read_text()), extra

    def remove(self) -> None:
        if self.accelerator.is_main_process:
            shutil.rmtree(self.root, ignore_errors=True)


def micro_batches(n: int, accum: int) -> list[slice]:
    """Split n rows into `accum` nearly equal consecutive slices (none empty)."""
    accum = max(1, min(accum, n))
    bounds = [round(i * n / accum) for i in range(accum + 1)]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


def across_processes(accelerator: Accelerator, value: Any) -> float:
    """The sum of a per-process number over every process (the number itself when alone):
    weights and logged figures of a step are the global batch's, not one process's share."""
    if accelerator.num_processes == 1:
        return float(value)
    total = torch.tensor(float(value), device=accelerator.device, dtype=torch.float64)
    return float(accelerator.reduce(total, "sum"))


def accumulate(
    accelerator: Accelerator,
    model: Any,
    parts: list[Any],
    loss_fn: Callable[[Any], tuple[torch.Tensor, float]],
) -> list[torch.Tensor]:
    """Backward each part's loss × its weight (gradient accumulation); returns the losses.

    `loss_fn(part)` gives (loss, weight) where the weights of all parts sum to 1 (e.g.
    the part's share of tokens), so the summed gradient is the whole batch's. Gradients
    are synchronised across processes on the last part only. With several processes the
    weights are shares of the global batch times the number of processes, since DDP
    averages the processes' gradients.
    """
    losses = []
    for i, part in enumerate(parts):
        sync = i == len(parts) - 1
        with accelerator.no_sync(model) if not sync else contextlib.nullcontext():
            loss, weight = loss_fn(part)
            accelerator.backward(loss * weight)
        losses.append(loss.detach())
    return losses
