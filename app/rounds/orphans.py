"""The store's sweep: entries that no model version or snapshot names are removed.

A worker that dies after publishing an entry and before the row that names it (a model
version, a snapshot) is written leaves an entry nothing references and nothing would ever
remove. The sweep, hourly from the beat and as `rlhf-studio store sweep [--dry-run]`, lists
the areas the stages and exports publish to, keeps every entry a version or a snapshot names
(and the base model RLHF_BASE_MODEL names), and removes the others once their commit is
older than RLHF_STORE_SWEEP_GRACE_HOURS: a younger one may be a publish whose row is on its
way.

It lives in the loop's layer, above the registry and the exports whose rows it reads; the
store (core) only lists entries and removes them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from app import store
from app.config import get_settings
from app.exports import service as exports
from app.registry import service as registry

AREAS = ("models", "exports")  # where the stages (models) and exports (snapshots) publish
log = logging.getLogger(__name__)


@dataclass
class Swept:
    """What a sweep did with each entry of the store, by URL."""

    removed: list[str] = field(default_factory=list)  # (with dry_run: would be)
    named: list[str] = field(default_factory=list)  # a version or snapshot names it
    young: list[str] = field(default_factory=list)  # unnamed, committed within the grace


def sweep(*, db: Session, shared: store.Store, dry_run: bool = False,
          now: datetime | None = None) -> Swept:
    """Remove the entries nothing names whose commit is older than the grace period."""
    grace = timedelta(hours=get_settings().store_sweep_grace_hours)
    cutoff = (now or datetime.now(UTC)) - grace
    listed = [entry for area in AREAS for entry in shared.entries(area)]
    # The rows are read after the listing: an entry registered meanwhile is seen as named.
    named = {shared.entry_of(path) for path in
             registry.stored_paths(db=db) | exports.stored_paths(db=db)}
    base = get_settings().base_model
    if store.is_url(base):
        named.add(shared.entry_of(base))
    swept = Swept()
    for entry in listed:
        if entry.url in named:
            swept.named.append(entry.url)
        elif entry.committed_at > cutoff:
            swept.young.append(entry.url)
        elif dry_run or shared.retire(entry):
            swept.removed.append(entry.url)
            if not dry_run:
                log.info("store sweep: removed %s (committed %s, named by nothing)",
                         entry.url, f"{entry.committed_at:%Y-%m-%d %H:%M:%S} UTC")
        else:  # published again since it was listed
            swept.young.append(entry.url)
    return swept
