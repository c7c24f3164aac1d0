"""Reading JSON lists of integers for many rows at once, with numpy instead of json.loads.

A ranking's groups (`[[12, 13], [11]]`) and display order (`[11, 12, 13]`) are small JSON
documents; 100k of them took seconds through json.loads and Python loops. Here all rows
are joined into one byte string and scanned with array operations: brackets give the
nesting depth, digit runs give the numbers. Anything other than non-negative integers,
brackets, commas and whitespace makes the parse give up (None), and the caller falls back
to json.loads.
"""

from collections.abc import Sequence

import numpy as np

_ROW_SEP = ord(";")  # never appears in JSON outside strings, and these texts have none
_ALLOWED = np.zeros(256, bool)
_ALLOWED[[ord(c) for c in "0123456789[], \t\r\n;"]] = True


def _nesting(blob: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Positions of the brackets and row separators, the depth after each, and whether
    each is a separator; None when the brackets do not balance within every row."""
    # Brackets and row separators are a small part of the text: track depth on them only.
    marks = np.flatnonzero((blob == ord("[")) | (blob == ord("]")) | (blob == _ROW_SEP))
    if len(marks) == 0:
        return None
    kind = blob[marks]
    depth = np.cumsum(np.where(kind == ord("["), 1, np.where(kind == ord("]"), -1, 0)))
    at_sep = kind == _ROW_SEP
    if (depth < 0).any() or depth[at_sep].any() or depth[-1] != 0:
        return None
    return marks, depth, at_sep


def _numbers(blob: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Where each digit run starts, and its value; None for a run too long for int64."""
    digit = (blob >= ord("0")) & (blob <= ord("9"))
    first = np.flatnonzero(digit & ~np.concatenate([[False], digit[:-1]]))
    if len(first) == 0:
        return first, np.zeros(0, np.int64)
    last_digit = np.flatnonzero(digit & ~np.concatenate([digit[1:], [False]]))
    if (last_digit - first >= 18).any():
        return None  # too long for int64
    # Blank out everything but digits and let numpy's C parser read the numbers.
    values = np.fromstring(np.where(digit, blob, ord(" ")).astype(np.uint8).tobytes(),
                           dtype=np.int64, sep=" ")
    if len(values) != len(first):
        return None
    return first, values


def int_lists(texts: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                np.ndarray] | None:
    """Every integer of every row's JSON text, in text order: (row, depth, inner, value).

    depth is 1 for `[1, 2]`'s numbers and 2 for `[[1], [2]]`'s; inner is the index of the
    inner list a number is in (for depth 2). A missing text counts as `[]`. None when a
    text is anything but (nested) lists of non-negative integers.
    """
    blob = np.frombuffer(";".join([t or "[]" for t in texts]).encode(), dtype=np.uint8)
    if len(blob) == 0 or not _ALLOWED[blob].all():
        return None
    nesting, numbers = _nesting(blob), _numbers(blob)
    if nesting is None or numbers is None:
        return None
    marks, depth, at_sep = nesting
    first, values = numbers
    if len(first) == 0:
        z = np.zeros(0, np.int64)
        return z, z, z, z
    inner_open = np.cumsum((blob[marks] == ord("[")) & (depth == 2))
    # Inner lists opened before each row starts, so `inner` counts from 0 in every row.
    row_base = np.concatenate([[0], inner_open[at_sep]])
    # The last mark before each number says its row, depth and inner list.
    last = np.searchsorted(marks, first) - 1
    if last[0] < 0:
        return None  # a number outside any list
    r = np.cumsum(at_sep)[last]
    return r, depth[last], inner_open[last] - row_base[r] - 1, values
