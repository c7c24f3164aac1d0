"""A job's output as a person reads it: terminal escapes removed, a progress bar's redraws
folded into its latest state.

Training children write for a terminal: colours and bold (`ESC[1m`), cursor moves between
nested tqdm bars (`ESC[A`), and a bar redrawn with `\r` or, between bars, on a new line
each time. The log tail keeps what is left once a terminal would have drawn it.
"""

import re

# CSI sequences (colours, cursor moves, erase), OSC sequences (titles, links), and the
# two-character escapes; plus the bare control characters a terminal does not print.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# A tqdm bar: "desc:  40%|████      | 4/10 [00:01<00:02, 3.1it/s]"; its key is the text
# before the percentage, so the redraws of one bar fold while two bars stay apart.
_BAR = re.compile(r"^(?P<desc>.*?)\s*\d{1,3}%\|.*\|")


def clean_line(line: str) -> str:
    """One line as a terminal shows it: what follows its last carriage return, no escapes."""
    line = _ESCAPES.sub("", line)
    line = line.rstrip("\r").rsplit("\r", 1)[-1]
    return _CONTROLS.sub("", line).rstrip()


def readable(text: str) -> str:
    """A log tail without escapes, each progress bar at its latest state where it was last
    drawn. Idempotent, so tails stored before this cleaning read the same."""
    out: list[str] = []
    where: dict[str, int] = {}  # a bar's key -> its line in `out`
    for raw in text.split("\n"):
        line = clean_line(raw)
        bar = _BAR.match(line)
        if bar is None:
            if line or (out and out[-1]):
                out.append(line)
            continue
        key = bar.group("desc")
        if key in where:
            out[where[key]] = ""  # the bar moves down to where it was drawn last
        where[key] = len(out)
        out.append(line)
    return "\n".join(line for i, line in enumerate(out) if line or i == len(out) - 1)


DEVICE_PREFIX = "Training on "  # the line app/jobs/child.py logs for a stage's device event


def device(text: str) -> str | None:
    """Where the job's training ran, as its stage announced it (None before it says)."""
    found = [line for line in text.split("\n") if line.startswith(DEVICE_PREFIX)]
    return found[-1][len(DEVICE_PREFIX):] if found else None
