"""Read exported snapshots, tokenise them, build response-only loss masks and batches.

Text layout everywhere: `format_prompt(prompt)` then the response then the tokenizer's
eos token. Tokenisation never adds the tokenizer's own special tokens (ByT5 would append
eos to the prompt), so the same prompt always gives the same prefix across stages.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from training.records import GroupedRecord, RankingRecord, Record, SFTRecord, parse_record

IGNORE = -100  # label of positions that take no loss (prompt and padding)
PROMPT_TEMPLATE = "{prompt}\n\n"


# ----------------------------------------------------------------------------- reading files


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSONL (or .parquet, via pyarrow) export as dicts."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_records(path: str | Path, kind: str) -> list[Record]:
    """Parse every row of an export as `kind` (see training.records.RECORD_TYPES)."""
    out = []
    for i, row in enumerate(read_rows(path), 1):
        try:
            out.append(parse_record(kind, row))
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path}: row {i}: {e}") from e
    return out


class ListDataset(Dataset):
    """A list as a map-style torch Dataset (records stay plain Python objects)."""

    def __init__(self, items: Sequence[Any]):
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Any:
        return self.items[i]


def read_sft(path: str | Path) -> list[SFTRecord]:
    """Demonstrations from an sft export (prompt/completion or chat messages)."""
    return [r for r in read_records(path, "sft") if isinstance(r, SFTRecord)]


def read_rankings(path: str | Path) -> list[GroupedRecord]:
    """Rankings from a grouped, rankings or comparisons export (a comparison is K = 2)."""
    rows = read_rows(path)
    if not rows:
        return []
    if "responses" in rows[0]:
        return [GroupedRecord.from_dict(r) for r in rows]
    if "candidates" in rows[0]:
        return [RankingRecord.from_dict(r).to_grouped() for r in rows]
    if "chosen" in rows[0]:
        return [
            GroupedRecord(r["prompt"], [r["chosen"], r["rejected"]], [[0], [1]], r.get("prompt_id"))
            for r in rows
        ]
    raise ValueError(f"{path}: rows are neither grouped, rankings nor comparisons records")


def read_prompts(path: str | Path) -> list[str]:
    """Prompt texts from a prompts, sft, grouped or rankings export (or {"text"} rows)."""
    rows = read_rows(path)
    return [r["prompt"] if "prompt" in r else r["text"] for r in rows]


def read_texts(path: str | Path) -> list[str]:
    """Pretraining text: JSONL/Parquet rows with "text", or a plain file split on blank lines."""
    path = Path(path)
    if path.suffix in (".jsonl", ".parquet"):
        return [r["text"] for r in read_rows(path)]
    return [p.strip() for p in path.read_text(encoding="utf-8").split("\n\n") if p.strip()]


def split_holdout(items: Sequence[Any], fraction: float, seed: int) -> tuple[list, list]:
    """Shuffle deterministically and hold out `fraction` (at least one item if fraction > 0)."""
    items = list(items)
    random.Random(seed).shuffle(items)
    n = max(1, round(len(items) * fraction)) if fraction > 0 and len(items) > 1 else 0
    return items[n:], items[:n]


# ----------------------------------------------------------------------------- tokenising


def format_prompt(prompt: str) -> str:
    """The text the model sees before its response."""
    return PROMPT_TEMPLATE.format(prompt=prompt)


def encode_prompt(tok, prompt: str, max_len: int) -> list[int]:
    """Token ids of the formatted prompt, keeping its end if too long."""
    ids = tok(format_prompt(prompt), add_special_tokens=False).input_ids
    return ids[-max_len:]


def encode_pair(tok, prompt: str, response: str, max_len: int) -> tuple[list[int], int]:
    """(prompt + response + eos ids, prompt length); the prompt gives way first if too long."""
    resp = tok(response, add_special_tokens=False).input_ids + [tok.eos_token_id]
    resp = resp[: max_len - 1] if len(resp) >= max_len else resp
    prompt_ids = encode_prompt(tok, prompt, max_len - len(resp))
    return prompt_ids + resp, len(prompt_ids)


def sft_example(tok, prompt: str, completion: str, max_len: int) -> dict[str, list[int]]:
    """input_ids and labels with IGNORE on every prompt token: loss on the response only."""
    ids, n_prompt = encode_pair(tok, prompt, completion, max_len)
    return {"input_ids": ids, "labels": [IGNORE] * n_prompt + ids[n_prompt:]}


def pad(seqs: Sequence[Sequence[int]], value: int, left: bool = False) -> torch.Tensor:
    """Pad lists of ids to one (B, T) long tensor, on the right (or left)."""
    width = max(len(s) for s in seqs)
    rows = [
        [value] * (width - len(s)) + list(s) if left else list(s) + [value] * (width - len(s))
        for s in seqs
    ]
    return torch.tensor(rows, dtype=torch.long)


def lengths_mask(seqs: Sequence[Sequence[int]], left: bool = False) -> torch.Tensor:
    """Attention mask (B, T) of 1 on real tokens for `pad` with the same side."""
    return pad([[1] * len(s) for s in seqs], 0, left=left)


# ----------------------------------------------------------------------------- collators


@dataclass
class SFTCollator:
    """SFT records -> input_ids, attention_mask, labels (B, T), right padded."""

    tok: Any
    max_len: int = 512

    def __call__(self, records: Sequence[SFTRecord]) -> dict[str, torch.Tensor]:
        examples = [sft_example(self.tok, r.prompt, r.completion, self.max_len) for r in records]
        ids = [e["input_ids"] for e in examples]
        return {
            "input_ids": pad(ids, self.tok.pad_token_id),
            "attention_mask": lengths_mask(ids),
            "labels": pad([e["labels"] for e in examples], IGNORE),
        }


@dataclass
class RankingCollator:
    """Grouped rankings -> all K_p responses of P prompts as N = ΣK_p rows, plus the groups.

    Each prompt stays one batch element: `sizes[p]` rows belong to prompt p and
    `rankings[p]` indexes into them, so every pair is scored from one forward per response.
    """

    tok: Any
    max_len: int = 512

    def __call__(self, records: Sequence[GroupedRecord]) -> dict[str, Any]:
        seqs = [
            encode_pair(self.tok, r.prompt, resp, self.max_len)[0]
            for r in records
            for resp in r.responses
        ]
        return {
            "input_ids": pad(seqs, self.tok.pad_token_id),  # (N, T)
            "attention_mask": lengths_mask(seqs),
            "sizes": [len(r.responses) for r in records],
            "rankings": [r.ranking for r in records],
        }


def prompt_batch(tok, prompts: Sequence[str], max_len: int) -> dict[str, torch.Tensor]:
    """Left-padded prompt ids for generation (so every response starts at the same column)."""
    ids = [encode_prompt(tok, p, max_len) for p in prompts]
    return {
        "input_ids": pad(ids, tok.pad_token_id, left=True),
        "attention_mask": lengths_mask(ids, left=True),
    }


def text_batch(tok, texts: Sequence[str], max_len: int) -> dict[str, torch.Tensor]:
    """Plain language-modelling batch: loss on every real token, none on padding."""
    ids = [
        tok(t, add_special_tokens=False).input_ids[: max_len - 1] + [tok.eos_token_id]
        for t in texts
    ]
    input_ids = pad(ids, tok.pad_token_id)
    return {"input_ids": input_ids, "attention_mask": lengths_mask(ids), "labels": pad(ids, IGNORE)}


def cycle_text_batches(
    tok, texts: Sequence[str], batch_size: int, max_len: int, seed: int
) -> Iterator[dict[str, torch.Tensor]]:
    """Endless shuffled pretraining batches (PPO-ptx), reshuffled every pass."""
    if not texts:
        raise ValueError("no pretraining texts")
    batch_size = min(batch_size, len(texts))
    rng = random.Random(seed)
    order = list(range(len(texts)))
    while True:
        rng.shuffle(order)
        for i in range(0, len(order) - batch_size + 1, batch_size):
            yield text_batch(tok, [texts[j] for j in order[i : i + batch_size]], max_len)
