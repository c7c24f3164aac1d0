"""Record shapes of exported datasets: the contract between the app and training/.

Standard library only, so the web process can import it without torch. Every exported
file is JSONL, one object per line, written with `Record.to_dict()` and read back with
`Record.from_dict()`. `from_dict` checks that required keys are present and raises a
`ValueError` naming the record kind and the missing keys; unknown keys are ignored so
that later schema versions can add fields without breaking older readers.

Kinds (`RECORD_TYPES`):
  sft          SFTRecord          one demonstration: prompt + the labeler's completion
  comparisons  ComparisonRecord   one (chosen, rejected) pair, TRL's preference format
  grouped      GroupedRecord      one submitted ranking as K responses + groups of indices
  rankings     RankingRecord      one submitted ranking with candidate ids and ratings
  ratings      RatingRecord       one Likert rating of one output
  prompts      PromptRecord       one prompt with its split and category
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

SCHEMA_VERSION = 1

T = TypeVar("T", bound="Record")


class Record:
    """Base for every record kind: dict round-trip with required-key validation."""

    kind: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of this record."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        """Build the record from a dict, raising ValueError if a required key is missing."""
        if not isinstance(data, dict):
            raise ValueError(f"{cls.kind} record must be a JSON object, got {type(data).__name__}")
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        required = [
            f.name
            for f in fields
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [name for name in required if name not in data]
        if missing:
            raise ValueError(f"{cls.kind} record is missing required key(s): {', '.join(missing)}")
        names = {f.name for f in fields}
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_json(self) -> str:
        """One JSONL line (no trailing newline)."""
        return json.dumps(self.to_dict(), ensure_ascii=False)


@dataclass
class SFTRecord(Record):
    """A demonstration: the ideal completion a labeler wrote for a prompt."""

    kind: ClassVar[str] = "sft"
    prompt: str
    completion: str
    prompt_id: int | None = None
    demonstration_id: int | None = None
    labeler_id: int | None = None

    def to_messages(self) -> dict[str, Any]:
        """The chat variant: {"messages": [user prompt, assistant completion]}."""
        return {
            "messages": [
                {"role": "user", "content": self.prompt},
                {"role": "assistant", "content": self.completion},
            ]
        }

    @classmethod
    def from_messages(cls, data: dict[str, Any]) -> SFTRecord:
        """Inverse of to_messages: the last assistant turn is the completion, the rest prompt."""
        messages = data.get("messages") if isinstance(data, dict) else None
        if not messages or messages[-1].get("role") != "assistant":
            raise ValueError("sft chat record needs 'messages' ending with an assistant turn")
        prompt = "\n".join(m["content"] for m in messages[:-1] if m.get("role") != "assistant")
        return cls(prompt=prompt, completion=messages[-1]["content"])


@dataclass
class ComparisonRecord(Record):
    """One preference pair (TRL format): `chosen` was ranked above `rejected`."""

    kind: ClassVar[str] = "comparisons"
    prompt: str
    chosen: str
    rejected: str
    prompt_id: int | None = None
    ranking_id: int | None = None
    labeler_id: int | None = None


@dataclass
class GroupedRecord(Record):
    """One submitted ranking as responses + groups of indices into them, best first.

    One GroupedRecord is written per submitted ranking (not merged per prompt), so two
    labelers ranking the same prompt give two records. A group of two or more is a tie.
    """

    kind: ClassVar[str] = "grouped"
    prompt: str
    responses: list[str]
    ranking: list[list[int]]
    prompt_id: int | None = None
    ranking_id: int | None = None
    labeler_id: int | None = None

    def __post_init__(self) -> None:
        flat = sorted(i for group in self.ranking for i in group)
        if flat != list(range(len(self.responses))):
            raise ValueError(
                "grouped record: ranking must use every response index exactly once, "
                f"got {self.ranking} for {len(self.responses)} responses"
            )


@dataclass
class RankingRecord(Record):
    """One submitted ranking with its candidates, display order and per-candidate ratings."""

    kind: ClassVar[str] = "rankings"
    ranking_id: int
    prompt_id: int
    prompt: str
    candidates: list[dict[str, Any]]
    groups: list[list[int]]
    display_order: list[int] = field(default_factory=list)
    ratings: dict[str, dict[str, Any]] = field(default_factory=dict)
    labeler_id: int | None = None
    seconds_spent: float | None = None
    created_at: str | None = None

    def to_grouped(self) -> GroupedRecord:
        """The same ranking as responses + index groups (order of `candidates`)."""
        index = {c["id"]: i for i, c in enumerate(self.candidates)}
        return GroupedRecord(
            prompt=self.prompt,
            responses=[c["text"] for c in self.candidates],
            ranking=[[index[cid] for cid in group] for group in self.groups],
            prompt_id=self.prompt_id,
            ranking_id=self.ranking_id,
            labeler_id=self.labeler_id,
        )


@dataclass
class RatingRecord(Record):
    """One Likert 1–7 rating of a single output, with the paper's metadata flags."""

    kind: ClassVar[str] = "ratings"
    rating_id: int
    prompt_id: int
    prompt: str
    candidate_id: int
    text: str
    likert: int
    model_version: str | None = None
    flags: list[str] = field(default_factory=list)
    comment: str | None = None
    labeler_id: int | None = None
    created_at: str | None = None


@dataclass
class PromptRecord(Record):
    """One prompt with its split (train | valid | test) and use-case category."""

    kind: ClassVar[str] = "prompts"
    prompt_id: int
    text: str
    split: str = "train"
    category: str | None = None
    end_user_id: str | None = None


RECORD_TYPES: dict[str, type[Record]] = {
    cls.kind: cls
    for cls in (
        SFTRecord,
        RankingRecord,
        ComparisonRecord,
        GroupedRecord,
        RatingRecord,
        PromptRecord,
    )
}


def comparisons_from_groups(groups: Sequence[Sequence[Any]]) -> Iterator[tuple[Any, Any]]:
    """Yield (winner, loser) for every pair in different groups (best first); ties give none."""
    for i, better in enumerate(groups):
        for worse in groups[i + 1 :]:
            for w in better:
                for loser in worse:
                    yield w, loser


def comparisons_from_ranking(record: RankingRecord) -> Iterator[ComparisonRecord]:
    """Expand one RankingRecord into its ComparisonRecords (C(K,2) minus tied pairs)."""
    text = {c["id"]: c["text"] for c in record.candidates}
    for w, loser in comparisons_from_groups(record.groups):
        yield ComparisonRecord(
            prompt=record.prompt,
            chosen=text[w],
            rejected=text[loser],
            prompt_id=record.prompt_id,
            ranking_id=record.ranking_id,
            labeler_id=record.labeler_id,
        )


def parse_record(kind: str, data: dict[str, Any]) -> Record:
    """Parse one dict as a record of `kind`; sft also accepts the chat variant."""
    if kind not in RECORD_TYPES:
        raise ValueError(f"unknown record kind {kind!r}; expected one of {sorted(RECORD_TYPES)}")
    if kind == "sft" and isinstance(data, dict) and "messages" in data:
        return SFTRecord.from_messages(data)
    return RECORD_TYPES[kind].from_dict(data)


def read_jsonl(path: str | Path, kind: str) -> list[Record]:
    """Read a JSONL export of `kind`; errors name the file and line."""
    out: list[Record] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(parse_record(kind, json.loads(line)))
            except (ValueError, TypeError) as e:
                raise ValueError(f"{path}:{lineno}: {e}") from e
    return out


def write_jsonl(path: str | Path, records: Iterable[Record]) -> int:
    """Write records as JSONL; returns the number of lines written."""
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(record.to_json() + "\n")
            n += 1
    return n
