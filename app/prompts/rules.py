"""The paper's data rules as pure functions, with their parameters in one model.

PAPER.md, "Data collection": drop duplicates sharing a long common prefix, cap prompts per
end-user id, split train / valid / test by end-user id, keep PII out of the train split.
"""

import hashlib
import re
import unicodedata

from pydantic import BaseModel, Field, model_validator

from app.fields import Text
from app.prompts.models import PREFIX_MAX, Split
from app.prompts.pii import PII_KINDS


class ImportRules(BaseModel):
    """Every rule's parameter; defaults follow the paper, each can be overridden per import."""

    split_seed: Text = Field(default="rlhf-studio", max_length=100,
                            description="Salt of the split hash; change it for a new split.")
    train_fraction: float = Field(default=0.8, ge=0, le=1)
    valid_fraction: float = Field(default=0.1, ge=0, le=1, description="test gets the rest")
    max_per_end_user: int | None = Field(default=200, ge=1, le=10**9,
                                         description="None: no cap")
    dedup_exact: bool = True
    dedup_prefix: bool = True
    prefix_chars: int = Field(default=60, ge=10, le=PREFIX_MAX,
                              description="Normalised characters two prompts must share to "
                              "count as duplicates.")
    scrub_pii: bool = True
    pii_kinds: list[Text] = Field(default_factory=lambda: list(PII_KINDS))
    scrub_splits: list[Split] = Field(default_factory=lambda: [Split.train])
    max_chars: int = Field(default=20_000, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _check(self) -> "ImportRules":
        if self.train_fraction + self.valid_fraction > 1 + 1e-9:
            raise ValueError("train_fraction + valid_fraction must be at most 1")
        unknown = set(self.pii_kinds) - set(PII_KINDS)
        if unknown:
            raise ValueError(f"unknown PII kinds {sorted(unknown)}; known: {list(PII_KINDS)}")
        return self


_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Case, whitespace and punctuation folded away: what "the same prompt" compares."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    kept = "".join(" " if unicodedata.category(ch)[0] in "PS" else ch for ch in folded)
    return _SPACE.sub(" ", kept).strip()


def text_hash(normalised: str) -> str:
    """The unique key of a prompt: sha256 of its normalised text."""
    return hashlib.sha256(normalised.encode()).hexdigest()


def _unit(seed: str, key: str) -> float:
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_for(rules: ImportRules, *, end_user_id: str | None, normalised: str) -> Split:
    """Deterministic split: by end user, so one user's prompts never cross splits."""
    key = f"user:{end_user_id}" if end_user_id else f"text:{normalised}"
    u = _unit(rules.split_seed, key)
    if u < rules.train_fraction:
        return Split.train
    if u < rules.train_fraction + rules.valid_fraction:
        return Split.valid
    return Split.test
