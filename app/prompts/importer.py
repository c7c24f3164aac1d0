"""Applying the data rules to a stream of rows, inside the caller's one transaction.

Duplicates are checked against the batch (in memory) and the database (by index: the
unique text hash, and a range scan of the normalised-prefix index), so an import costs a
few index probes per row and never compares all pairs.
"""

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.prompts import pii
from app.prompts.models import PREFIX_MAX, Prompt, PromptSource, Split
from app.prompts.parsing import BadLine, Row
from app.prompts.rules import ImportRules, normalise, split_for, text_hash

MAX_ISSUES = 200  # reported line by line; beyond that only counted
FLUSH_EVERY = 500


@dataclass
class ImportReport:
    """What an import did, with the lines it did not accept and why."""

    accepted: int = 0
    merged: int = 0
    capped: int = 0
    rejected: int = 0
    issues: list[dict[str, Any]] = field(default_factory=list)
    prompt_ids: list[int] = field(default_factory=list)

    def note(self, outcome: str, line: int, reason: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)
        if len(self.issues) < MAX_ISSUES:
            self.issues.append({"line": line, "outcome": outcome, "reason": reason})

    def summary(self) -> dict[str, Any]:
        """The counts and issues, without the (possibly long) list of ids."""
        return {"accepted": self.accepted, "merged": self.merged, "capped": self.capped,
                "rejected": self.rejected, "issues": self.issues}


@dataclass
class Outcome:
    """The fate of one row: a new prompt, or why not (and the prompt it duplicates)."""

    kind: str  # accepted | merged | capped | rejected
    reason: str = ""
    prompt: Prompt | None = None
    duplicate_of: int | None = None


class Importer:
    """One import's state: what the batch has seen, and per-end-user split and count."""

    def __init__(self, *, db: Session, rules: ImportRules, source: PromptSource,
                 created_by_id: int | None = None) -> None:
        self.db, self.rules, self.source, self.created_by_id = db, rules, source, created_by_id
        self.hashes: dict[str, Prompt] = {}
        self.prefixes: dict[str, Prompt] = {}
        self.users: dict[str, tuple[Split | None, int]] = {}
        self.pending = 0

    def run(self, rows: Any, report: ImportReport, progress: Any = None) -> ImportReport:
        """Consider every row, adding accepted prompts to the session."""
        with self.db.no_autoflush:
            for row in rows:
                if isinstance(row, BadLine):
                    report.note("rejected", row.line, row.reason)
                else:
                    out = self.consider(row)
                    if out.kind == "accepted" and out.prompt is not None:
                        report.accepted += 1
                    else:
                        report.note(out.kind, row.line, out.reason)
                if progress is not None:
                    progress()
        self.flush()
        report.prompt_ids = [p.id for p in self.hashes.values() if p.id is not None]
        return report

    def flush(self) -> None:
        self.db.flush()
        self.pending = 0

    def _user(self, end_user_id: str) -> tuple[Split | None, int]:
        if end_user_id not in self.users:
            rows = self.db.execute(
                select(Prompt.split, func.count()).where(Prompt.end_user_id == end_user_id)
                .group_by(Prompt.split).order_by(func.count().desc())
            ).all()
            # An end user already in the database keeps the split they have.
            self.users[end_user_id] = (rows[0][0] if rows else None, sum(n for _, n in rows))
        return self.users[end_user_id]

    def _existing(self, digest: str) -> int | None:
        return self.db.scalar(select(Prompt.id).where(Prompt.text_hash == digest))

    def _existing_prefix(self, prefix: str) -> int | None:
        # A btree range scan: the first stored prefix >= ours either starts with it or
        # nothing does.
        hit = self.db.execute(
            select(Prompt.id, Prompt.norm_prefix).where(Prompt.norm_prefix >= prefix)
            .order_by(Prompt.norm_prefix).limit(1)
        ).first()
        return hit[0] if hit and hit[1] is not None and hit[1].startswith(prefix) else None

    def _duplicate(self, norm: str, digest: str, *, prefix_rule: bool) -> tuple[str, int | None]:
        if digest in self.hashes:
            return "the same as an earlier line", self.hashes[digest].id
        found = self._existing(digest)
        if found is not None:
            return f"the same as prompt {found}", found
        if prefix_rule and self.rules.dedup_prefix and len(norm) >= self.rules.prefix_chars:
            prefix = norm[: self.rules.prefix_chars]
            if prefix in self.prefixes:
                return "shares a long prefix with an earlier line", self.prefixes[prefix].id
            found = self._existing_prefix(prefix)
            if found is not None:
                return f"shares a long prefix with prompt {found}", found
        return "", None

    def consider(self, row: Row, *, prefix_rule: bool = True) -> Outcome:
        """Apply split, PII, duplicate and cap rules to one row; add it when it passes."""
        rules = self.rules
        original = normalise(row.text)
        if not original:
            return Outcome("rejected", "the text has no words")
        known_split, count = self._user(row.end_user_id) if row.end_user_id else (None, 0)
        split = known_split or split_for(rules, end_user_id=row.end_user_id, normalised=original)
        text, counts = row.text, dict[str, int]()
        if rules.scrub_pii and split in rules.scrub_splits:
            text, counts = pii.scrub(row.text, rules.pii_kinds)
        norm = normalise(text)
        digest = text_hash(norm)
        reason, dup = self._duplicate(norm, digest, prefix_rule=prefix_rule)
        if reason:
            return Outcome("merged", f"duplicate: {reason}", duplicate_of=dup)
        if row.end_user_id and rules.max_per_end_user is not None \
                and count >= rules.max_per_end_user:
            return Outcome("capped", f"end user {row.end_user_id} already has "
                                     f"{rules.max_per_end_user} prompts")
        prompt = Prompt(
            text=text, text_hash=digest, norm_prefix=norm[:PREFIX_MAX], source=self.source,
            end_user_id=row.end_user_id, category=row.category, split=split, meta=row.meta,
            pii_counts=counts, created_by_id=self.created_by_id,
        )
        self._add(prompt, norm, count)
        return Outcome("accepted", prompt=prompt)

    def _add(self, prompt: Prompt, norm: str, count: int) -> None:
        """Add an accepted prompt, remember its hash, prefix and end user's count (so later
        rows of this import see it), and flush every FLUSH_EVERY prompts."""
        self.db.add(prompt)
        self.hashes[prompt.text_hash] = prompt
        if len(norm) >= self.rules.prefix_chars:
            self.prefixes.setdefault(norm[: self.rules.prefix_chars], prompt)
        if prompt.end_user_id:
            self.users[prompt.end_user_id] = (prompt.split, count + 1)
        self.pending += 1
        if self.pending >= FLUSH_EVERY:
            self.flush()
