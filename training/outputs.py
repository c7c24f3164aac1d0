"""What every stage writes: atomic model directories, manifest.json and metrics.jsonl.

A model directory is built in a temporary sibling (`.NAME.tmp-XXXX`) and renamed into
place only when complete, so a crash leaves either the old directory or none, never a
half-written model. Progress goes three ways at once: a tqdm bar, one JSON line per step
in `metrics.jsonl`, and an optional `callback(step, total, metrics)` for the app's jobs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from training.records import SCHEMA_VERSION

Callback = Callable[[int, int, dict[str, float]], None]


class StageCancelled(Exception):
    """A stop was asked for (SIGTERM under `--events`); raised at the next step boundary."""


class _Events:
    """`python -m training --events`: every RunLog also prints one JSON line per step on
    stdout, and SIGTERM stops the stage at its next step (the output directory is not
    written). This is how the app's workers watch and cancel a stage they run as a child."""

    enabled = False
    stop_requested = False

    @classmethod
    def enable(cls) -> None:
        import signal

        cls.enabled = True
        signal.signal(signal.SIGTERM, cls._on_sigterm)

    @classmethod
    def _on_sigterm(cls, signum: int, frame: Any) -> None:
        cls.stop_requested = True

    @staticmethod
    def emit(step: int, total: int, metrics: dict[str, Any]) -> None:
        line = {"event": "step", "step": step, "total": total, "metrics": metrics}
        print(json.dumps(line, default=str), flush=True)


def announce_device(device: str) -> None:
    """Say where the stage trains: a JSON event under `--events` (the app's job page
    shows it), a plain line otherwise."""
    if _Events.enabled:
        print(json.dumps({"event": "device", "device": device}), flush=True)
    else:
        print(f"Training on {device}", flush=True)


def stream_events() -> None:
    """Turn on the JSON step events on stdout and the SIGTERM step-boundary stop."""
    _Events.enable()

MANIFEST = "manifest.json"
METRICS = "metrics.jsonl"


@contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside `target`; rename it to `target` on success only."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists():  # replace: move the old one aside first so the swap is two renames
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(target, old)
        os.rename(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, target)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def data_fingerprint(paths: Sequence[str | Path | None]) -> dict[str, Any]:
    """sha256 of each input file and one combined digest (the file's own if only one)."""
    files = [{"path": str(p), "sha256": sha256_file(p)} for p in paths if p]
    if len(files) == 1:
        combined = files[0]["sha256"]
    else:
        combined = hashlib.sha256("".join(f["sha256"] for f in files).encode()).hexdigest()
    return {"data_sha256": combined if files else None, "data_files": files}


def write_manifest(
    out: Path,
    *,
    kind: str,
    parent_model: str | None,
    config: Any,
    metrics: dict[str, Any],
    data_files: Sequence[str | Path | None] = (),
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write manifest.json describing the model directory; returns it."""
    is_instance = dataclasses.is_dataclass(config) and not isinstance(config, type)
    config_dict = dataclasses.asdict(config) if is_instance else config
    manifest = {
        "kind": kind,
        "parent_model": parent_model,
        **data_fingerprint(data_files),
        "config": config_dict,
        "metrics": metrics,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "schema_version": SCHEMA_VERSION,
        **(extra or {}),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return manifest


def read_manifest(model_dir: str | Path) -> dict[str, Any] | None:
    """The manifest of a model directory, or None for a plain Hugging Face directory."""
    path = Path(model_dir) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else None


class RunLog:
    """Per-step metrics to a progress bar, metrics.jsonl and an optional callback.

    While the run is live the lines go to `.NAME.metrics.jsonl` beside the output
    directory; `finish_into(dir)` moves the file into the model directory being written.
    """

    def __init__(
        self,
        out: str | Path,
        total: int,
        desc: str,
        callback: Callback | None = None,
        enabled: bool = True,
    ):
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        self.path = out.parent / f".{out.name}.{METRICS}"
        self.total, self.callback, self.enabled = total, callback, enabled
        self.history: list[dict[str, Any]] = []
        self._file = open(self.path, "w") if enabled else None  # noqa: SIM115
        self._bar = tqdm(total=total, desc=desc, disable=not enabled, dynamic_ncols=True)

    def log(self, step: int, metrics: dict[str, Any], advance: int = 1) -> None:
        """Record the metrics of one step (advance the bar by `advance`)."""
        row = {"step": step, **{k: _plain(v) for k, v in metrics.items()}}
        self.history.append(row)
        if self._file:
            self._file.write(json.dumps(row) + "\n")
            self._file.flush()
        shown = {k: f"{v:.3g}" for k, v in row.items() if isinstance(v, float)}
        # shown at the bar's next redraw: refreshing here would redraw it every step, past
        # the mininterval a worker sets (TQDM_MININTERVAL), into the job's log
        self._bar.set_postfix(dict(list(shown.items())[:4]), refresh=False)
        self._bar.update(advance)
        if self.callback and self.enabled:
            self.callback(step, self.total, dict(row))
        if _Events.enabled and self.enabled:
            _Events.emit(step, self.total, row)
        if _Events.stop_requested:
            raise StageCancelled(f"stopped at step {step} of {self.total}")

    def finish_into(self, directory: Path) -> None:
        """Close the bar and move metrics.jsonl into `directory`."""
        self._bar.close()
        if self._file:
            self._file.close()
            self._file = None
            shutil.move(self.path, directory / METRICS)

    def close(self) -> None:
        """Close without moving (the live file stays for a failed run's post-mortem)."""
        self._bar.close()
        if self._file:
            self._file.close()
            self._file = None


def _plain(value: Any) -> Any:
    """Tensors and numpy scalars to Python numbers so they serialise as JSON."""
    if hasattr(value, "item"):
        value = value.item()
    return round(value, 6) if isinstance(value, float) else value
