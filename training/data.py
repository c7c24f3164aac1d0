"""Read exported snapshots, tokenise them, build response-only loss masks and batches.

Text layout everywhere: the tokenizer's chat template applied to the prompt (as a user
turn, or the chat record's own turns) with `add_generation_prompt=True`, then the
response, then the tokenizer's eos token. A tokenizer without a chat template gets
`PLAIN_CHAT_TEMPLATE` ("{prompt}\n\n{response}<eos>"), and every model directory we write
saves its template, so transformers, TRL and vLLM lay text out the way it was trained.
Tokenisation never adds the tokenizer's own special tokens (ByT5 would append eos to the
prompt), so the same prompt always gives the same prefix across stages.

Hold-out splits are by prompt (`prompt_key`): every record of one prompt (several
labelers' rankings, several demonstrations) lands on the same side.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from training.records import (
    GroupedRecord,
    RankingRecord,
    SFTRecord,
    comparisons_from_groups,
    parse_record,
)

IGNORE = -100  # label of positions that take no loss (prompt and padding)
PROMPT_TEMPLATE = "{prompt}\n\n"
# The same layout as a chat template: user/system turns end with a blank line, an
# assistant turn with eos; the generation prompt adds nothing (the blank line is there).
PLAIN_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}{{ message['content'] + eos_token }}"
    "{%- else -%}{{ message['content'] + '\\n\\n' }}{%- endif -%}"
    "{%- endfor -%}"
)
Prompt = str | list[dict[str, str]]  # a plain prompt, or the chat turns before the answer


# ----------------------------------------------------------------------------- reading files


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSONL (or .parquet, via pyarrow) export as dicts."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class ListDataset(Dataset):
    """A list as a map-style torch Dataset (records stay plain Python objects)."""

    def __init__(self, items: Sequence[Any]):
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Any:
        return self.items[i]


@dataclass
class ChatSFTRecord(SFTRecord):
    """A chat demonstration: `messages` are the turns before the answer (`completion`).

    `prompt` keeps the plain-text join for display and hashing; tokenisation uses
    `messages` through the tokenizer's chat template.
    """

    messages: list[dict[str, str]] | None = None


def prompt_of(record: Any) -> Prompt:
    """What the model is prompted with: the chat turns if the record has them, else text."""
    messages = getattr(record, "messages", None)
    return messages if messages else record.prompt


def read_sft(path: str | Path) -> list[SFTRecord]:
    """Demonstrations from an sft export (prompt/completion or chat messages)."""
    out: list[SFTRecord] = []
    for i, row in enumerate(read_rows(path), 1):
        try:
            record = parse_record("sft", row)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path}: row {i}: {e}") from e
        assert isinstance(record, SFTRecord)
        if isinstance(row, dict) and "messages" in row:
            turns = [
                {"role": m.get("role", "user"), "content": m["content"]}
                for m in row["messages"][:-1]
            ]
            record = ChatSFTRecord(
                **{**record.to_dict(), **_ids(row, "prompt_id", "demonstration_id", "labeler_id")},
                messages=turns,
            )
        out.append(record)
    return out


def _ids(row: dict[str, Any], *names: str) -> dict[str, Any]:
    return {n: row[n] for n in names if row.get(n) is not None}


def read_rankings(path: str | Path) -> list[GroupedRecord]:
    """Rankings from a grouped, rankings or comparisons export (a comparison is K = 2).

    Comparison rows of one ranking (same `ranking_id`; without one, same `prompt_id` and
    `labeler_id`) are put back together as one K-way ranking when their pairs are exactly
    those of a ranking with ties; rows without ids, or pairs no ranking explains, stay
    K = 2 elements.
    """
    rows = read_rows(path)
    if not rows:
        return []
    if "responses" in rows[0]:
        return [GroupedRecord.from_dict(r) for r in rows]
    if "candidates" in rows[0]:
        return [RankingRecord.from_dict(r).to_grouped() for r in rows]
    if "chosen" in rows[0]:
        return group_comparisons(rows)
    raise ValueError(f"{path}: rows are neither grouped, rankings nor comparisons records")


def group_comparisons(rows: Sequence[dict[str, Any]]) -> list[GroupedRecord]:
    """Comparison rows -> K-way rankings, one per ranking id (see read_rankings)."""
    groups: dict[Hashable, list[dict[str, Any]]] = {}
    for i, r in enumerate(rows):
        missing = [k for k in ("prompt", "chosen", "rejected") if k not in r]
        if missing:
            raise ValueError(f"comparisons row {i + 1} is missing key(s): {', '.join(missing)}")
        if r.get("ranking_id") is not None:
            key: Hashable = ("ranking", r["ranking_id"])
        elif r.get("prompt_id") is not None:
            key = ("prompt", r["prompt_id"], r.get("labeler_id"))
        else:
            key = ("row", i)
        groups.setdefault(key, []).append(r)
    out: list[GroupedRecord] = []
    for members in groups.values():
        first = members[0]
        ids = {k: first.get(k) for k in ("prompt_id", "ranking_id", "labeler_id")}
        texts: list[str] = []
        for r in members:
            for t in (r["chosen"], r["rejected"]):
                if t not in texts:
                    texts.append(t)
        pairs = Counter((texts.index(r["chosen"]), texts.index(r["rejected"])) for r in members)
        ranking = ranking_from_pairs(len(texts), pairs)
        if ranking is not None and len({r["prompt"] for r in members}) == 1:
            out.append(GroupedRecord(first["prompt"], texts, ranking, **ids))
        else:
            out += [
                GroupedRecord(r["prompt"], [r["chosen"], r["rejected"]], [[0], [1]], **ids)
                for r in members
            ]
    return out


def ranking_from_pairs(n: int, pairs: Counter) -> list[list[int]] | None:
    """The ranking (groups best first, ties grouped) whose pairs are exactly `pairs`, or None.

    A response's level is how many responses beat it; equal levels are ties. The result
    is accepted only if it gives back every pair once and no other.
    """
    beaten = [sum(1 for (_, lo) in pairs if lo == j) for j in range(n)]
    levels = sorted(set(beaten))
    ranking = [[j for j in range(n) if beaten[j] == level] for level in levels]
    return ranking if Counter(comparisons_from_groups(ranking)) == pairs else None


def read_prompts(path: str | Path, split: str | None = "train") -> list[str]:
    """Prompt texts from a prompts, sft, grouped or rankings export (or {"text"} rows).

    Rows with a `split` key are kept only if it equals `split` (None or "all" keeps
    every row); rows without one are kept.
    """
    rows = read_rows(path)
    if split not in (None, "all"):
        kept = [r for r in rows if r.get("split", split) == split]
        if rows and not kept:
            found = sorted({str(r.get("split")) for r in rows})
            raise ValueError(f"{path}: no prompts in split {split!r} (splits found: {found})")
        rows = kept
    return [r["prompt"] if "prompt" in r else r["text"] for r in rows]


def read_texts(path: str | Path) -> list[str]:
    """Pretraining text: JSONL/Parquet rows with "text", or a plain file split on blank lines."""
    path = Path(path)
    if path.suffix in (".jsonl", ".parquet"):
        return [r["text"] for r in read_rows(path)]
    return [p.strip() for p in path.read_text(encoding="utf-8").split("\n\n") if p.strip()]


def prompt_key(record: Any) -> Hashable:
    """What a hold-out split keeps together: the prompt id, else the prompt text."""
    pid = getattr(record, "prompt_id", None)
    return ("id", pid) if pid is not None else ("text", str(getattr(record, "prompt", record)))


def split_holdout(
    items: Sequence[Any],
    fraction: float,
    seed: int,
    key: Callable[[Any], Hashable] | None = None,
) -> tuple[list, list]:
    """Shuffle deterministically and hold out `fraction` (at least one item if fraction > 0).

    With `key`, items sharing a key (one prompt's records) are held out or kept together:
    whole groups are held out until at least `fraction` of the items are, and a split that
    would leave nothing to train on holds out nothing.
    """
    items = list(items)
    rng = random.Random(seed)
    if key is None:
        rng.shuffle(items)
        n = max(1, round(len(items) * fraction)) if fraction > 0 and len(items) > 1 else 0
        return items[n:], items[:n]
    groups: dict[Hashable, list[Any]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    order = list(groups.values())
    rng.shuffle(order)
    target = max(1, round(len(items) * fraction)) if fraction > 0 else 0
    held: list[Any] = []
    while order and len(held) < target and len(order) > 1:
        held += order.pop()
    return [item for group in order for item in group], held


# ----------------------------------------------------------------------------- tokenising


def ensure_chat_template(tok: Any) -> str:
    """Give `tok` the plain layout as its chat template if it has none; returns the layout.

    "plain" is ours ("{prompt}\n\n{response}<eos>"); "model" means the tokenizer came
    with its own template (an instruct model's), which every stage then uses.
    """
    if not getattr(tok, "chat_template", None):
        tok.chat_template = PLAIN_CHAT_TEMPLATE
    return "plain" if tok.chat_template == PLAIN_CHAT_TEMPLATE else "model"


def as_messages(prompt: Prompt) -> list[dict[str, str]]:
    """A plain prompt as one user turn; chat turns as they are."""
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def format_prompt(prompt: Prompt, tok: Any = None) -> str:
    """The text the model sees before its response: the tokenizer's chat template with the
    generation prompt (the plain layout without a tokenizer or template)."""
    if tok is None or not getattr(tok, "chat_template", None):
        if not isinstance(prompt, str):
            prompt = "\n\n".join(m["content"] for m in prompt)
        return PROMPT_TEMPLATE.format(prompt=prompt)
    return tok.apply_chat_template(as_messages(prompt), add_generation_prompt=True, tokenize=False)


def encode_prompt(tok, prompt: Prompt, max_len: int) -> list[int]:
    """Token ids of the formatted prompt, keeping its end if too long."""
    ids = tok(format_prompt(prompt, tok), add_special_tokens=False).input_ids
    return ids[-max_len:]


def encode_pair(tok, prompt: Prompt, response: str, max_len: int) -> tuple[list[int], int]:
    """(prompt + response + eos ids, prompt length); the prompt gives way first if too long."""
    resp = tok(response, add_special_tokens=False).input_ids + [tok.eos_token_id]
    resp = resp[: max_len - 1] if len(resp) >= max_len else resp
    prompt_ids = encode_prompt(tok, prompt, max_len - len(resp))
    return prompt_ids + resp, len(prompt_ids)


def sft_example(tok, prompt: Prompt, completion: str, max_len: int) -> dict[str, list[int]]:
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
        examples = [
            sft_example(self.tok, prompt_of(r), r.completion, self.max_len) for r in records
        ]
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
