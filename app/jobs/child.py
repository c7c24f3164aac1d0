"""Training stages run as child processes of the worker: `python -m training --events …`.

Why a child and not the worker itself: CUDA memory and crashes stay inside the child (a
segfault or OOM fails the job, not the worker), a cancel is a signal, and the same command
runs under `accelerate launch` for more than one GPU. The child prints one JSON line per step
on stdout (`{"event": "step", …}`), which becomes the job's progress and metrics; every other
line goes to the job's log tail. On SIGTERM the child stops at its next step boundary and
leaves no output directory; if it has not exited after the grace period it is killed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections import deque
from typing import Any, Protocol

from app.config import get_settings
from app.jobs.errors import JobCancelled, JobFailed
from app.jobs.logtext import DEVICE_PREFIX
from training.contract import CANCELLED_EXIT


class Host(Protocol):
    """What a child reports to: the running job's context (app.jobs.kinds.JobContext)."""

    child_timeout_s: float

    def log(self, line: str) -> None: ...
    def progress(self, fraction: float) -> None: ...
    def metric(self, step: int, values: dict[str, Any]) -> None: ...
    def cancelled(self) -> bool: ...

# Stored under TRL's names where TRL has one, so charts and tools read familiar keys.
TRL_KEYS = {
    "rm_score": "objective/scores", "kl": "objective/kl", "entropy": "objective/entropy",
    "objective": "objective/rlhf_reward", "beta": "objective/kl_coef",
    "pg_loss": "ppo/loss/policy", "value_loss": "ppo/loss/value",
    "clip_frac": "ppo/policy/clipfrac", "ptx_loss": "ppo/loss/ptx",
    "response_len": "ppo/response_length", "heldout_lm_loss": "val/heldout_lm_loss",
    "val_loss": "val/loss", "val_accuracy": "val/accuracy", "val_reward": "val/reward",
}


def trl_names(metrics: dict[str, object]) -> dict[str, object]:
    """The metrics with training's short names replaced by TRL's."""
    return {TRL_KEYS.get(k, k): v for k, v in metrics.items()}


def command(argv: list[str], processes: int = 1) -> list[str]:
    """The command line of one stage: plain Python, or accelerate for several processes.

    RLHF_TRAIN_THREADS bounds torch's threads in every child, whatever it runs (a stage, the
    tiny base model's pretraining, sampling): on a busy machine a child left at torch's
    default contends with itself and ran a build 10x slower than with one thread.
    """
    threads = get_settings().train_threads
    if threads and "--threads" not in argv:
        argv = ["--threads", str(threads), *argv]
    if processes > 1:  # --multi_gpu: without it accelerate starts one process where no
        # GPUs are counted (a CPU worker), which then trains alone; on CPU they join by gloo
        return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
                "--num_processes", str(processes), "-m", "training", "--events", *argv]
    return [sys.executable, "-m", "training", "--events", *argv]


def _read(ctx: Host, stream: object, tail: deque[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        line = line.rstrip("\n").rsplit("\r", 1)[-1]  # a progress bar's redraws: the last
        at = line.find('{"event"')  # a bar drawn without a newline can precede the event
        if at >= 0:
            try:
                event = json.loads(line[at:])
            except ValueError:
                event = None
            if event and event.get("event") == "device":
                # The canonical line app/jobs/views.device reads back for the job page.
                ctx.log(f"{DEVICE_PREFIX}{str(event.get('device'))[:200]}")
                continue
            if event and event.get("event") == "step":
                total = max(int(event.get("total") or 0), 1)
                ctx.progress(min(1.0, int(event["step"]) / total))
                ctx.metric(int(event["step"]), trl_names(event.get("metrics") or {}))
                line = line[:at]
                if not line.strip():
                    continue
        if line.strip():
            tail.append(line)
            ctx.log(line)


def run_child(ctx: Host, argv: list[str], *, processes: int = 1) -> None:
    """Run the stage; raise JobCancelled or JobFailed (with the last lines of its output)."""
    env = {**os.environ, "TQDM_MININTERVAL": "10", "PYTHONUNBUFFERED": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(
        command(argv, processes), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=env, start_new_session=True,  # its own process group: a signal reaches all of it
        preexec_fn=_die_with_parent,
    )
    tail: deque[str] = deque(maxlen=20)
    reader = threading.Thread(target=_read, args=(ctx, proc.stdout, tail), daemon=True)
    reader.start()
    signalled = False
    while True:
        try:
            code = proc.wait(timeout=0.5)
            break
        except subprocess.TimeoutExpired:
            pass
        if ctx.cancelled() and not signalled:
            signalled = True
            _signal(proc, signal.SIGTERM)
            try:
                code = proc.wait(timeout=ctx.child_timeout_s)
                break
            except subprocess.TimeoutExpired:
                _signal(proc, signal.SIGKILL)
    reader.join(timeout=5)
    if signalled or code == CANCELLED_EXIT:
        raise JobCancelled("cancelled at a step boundary")
    if code != 0:
        raise JobFailed(failure_sentence(_stage(argv), code, list(tail)))


# The line of a traceback that says what went wrong ("ValueError: ptx_coef > 0 needs …"), or
# argparse's refusal ("python -m training: error: …").
_REASON = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Exit)\b|.*: error: )")


def failure_sentence(stage: str, code: int, tail: list[str]) -> str:
    """What a failed stage's job (and its round) says: the error's message, not the end of
    a traceback cut off mid-frame; the whole output is in the job's log."""
    lines = [line.strip() for line in tail if line.strip()]
    reason = next((line for line in reversed(lines) if _REASON.match(line)),
                  lines[-1] if lines else "it printed nothing")
    return (f"The {stage} stage failed: {reason} (exit status {code}; its output is in the "
            "job's log).")


def _stage(argv: list[str]) -> str:
    """The stage's name: the first word that is no option (`--threads N` may come first)."""
    return next((a for a in argv if not a.startswith("-") and not a.isdigit()), "training")


def _die_with_parent() -> None:
    """In the child: be killed if the worker dies (Linux), so a SIGKILLed worker leaves no
    training running on to finish a directory nobody will register."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _signal(proc: subprocess.Popen[str], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
