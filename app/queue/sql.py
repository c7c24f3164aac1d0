"""The hot-path SQL of the queue, shared by the service and bench/bench_queue.py.

Written as SQL rather than built by the ORM: the service runs these at the driver level
(`app.db.Sql`), and the statement the benchmark times directly through psycopg is byte
for byte the one the API runs (docs/queue.md explains the plan).
"""

from functools import cache
from typing import Any

from sqlalchemy import JSON

from app.db import Sql, UTCDateTime

# The task columns a lease and a submit need (not gold_answer: it never reaches a labeler).
_TASK = "t.id, t.kind, t.prompt_id, t.candidate_ids, t.params"
_TASK_TYPES: dict[str, Any] = {"candidate_ids": JSON(), "params": JSON()}
_ASSIGNMENT_TYPES: dict[str, Any] = {"display_order": JSON(), "expires_at": UTCDateTime()}

# The filter starts with the partial indexes' predicate (app/queue/models.OPEN)
# so the planner can use them; `OFFSET 0` keeps NOT EXISTS a per-task probe of
# uq_assignments_task_user instead of letting it become an anti-join over the user's
# whole history.
_PICK = """
SELECT {columns} FROM tasks t
WHERE {kind} t.state = 'open' AND t.done_labels + t.leased_labels < t.required_labels
  AND NOT EXISTS (
    SELECT 1 FROM assignments a WHERE a.task_id = t.id AND a.user_id = :user_id {offset}
  )
ORDER BY t.priority DESC, t.id
LIMIT 1 {lock}
"""


def _judges(dialect: str) -> str:
    """A compare task's `params.judges` (held_out | all) as SQL."""
    if dialect == "postgresql":
        return "(t.params->>'judges')"
    return "json_extract(t.params, '$.judges')"


def pick_sql(*, dialect: str, with_kind: bool, compare_for_all: bool = False) -> str:
    """The next-task pick for this dialect, with or without a kind filter.

    Without a kind, compare tasks are left out: a labeler gets them only by asking for
    them (held-out labelers do, app/queue/service.next_task). `compare_for_all`: only the
    compare tasks every labeler may judge, not those kept for held-out labelers.
    """
    postgres = dialect == "postgresql"
    kind = "t.kind = :kind AND" if with_kind else "t.kind <> 'compare' AND"
    if compare_for_all:
        kind += f" {_judges(dialect)} = 'all' AND"
    return _PICK.format(
        columns=_TASK,
        kind=kind,
        # SQLite needs LIMIT before OFFSET; its single writer serialises leases anyway.
        offset="OFFSET 0" if postgres else "LIMIT -1 OFFSET 0",
        lock="FOR UPDATE SKIP LOCKED" if postgres else "",
    )


@cache
def pick(dialect: str, with_kind: bool, compare_for_all: bool = False) -> Sql:
    """The pick as a statement to run."""
    return Sql(pick_sql(dialect=dialect, with_kind=with_kind, compare_for_all=compare_for_all),
               **_TASK_TYPES)


# The claim re-checks the free slot: on PostgreSQL the row is already locked so it always
# succeeds; on SQLite it is the first write, taken under the database write lock, so two
# leases racing for the last slot cannot both win.
CLAIM = Sql("""
UPDATE tasks SET leased_labels = leased_labels + 1
WHERE id = :task_id AND state = 'open' AND done_labels + leased_labels < required_labels
""")

# The user's live lease, with what its page needs of the task (a reload re-uses it).
_LIVE_LEASE = """
SELECT a.id, a.task_id, a.display_order, a.expires_at, t.kind, t.prompt_id, t.params
FROM assignments a JOIN tasks t ON t.id = a.task_id
WHERE a.user_id = :user_id AND a.state = 'leased' AND a.expires_at > :now {kind}
ORDER BY a.id LIMIT 1
"""
LIVE_LEASE = Sql(_LIVE_LEASE.format(kind=""), stamps=("now",), params=JSON(), **_ASSIGNMENT_TYPES)
LIVE_LEASE_OF_KIND = Sql(_LIVE_LEASE.format(kind="AND t.kind = :kind"), stamps=("now",),
                         params=JSON(), **_ASSIGNMENT_TYPES)

EXPIRED = Sql("""
SELECT id, task_id FROM assignments
WHERE state = 'leased' AND expires_at <= :now
ORDER BY expires_at LIMIT :limit
""", stamps=("now",))

INSERT_ASSIGNMENT = Sql("""
INSERT INTO assignments (task_id, user_id, state, display_order, leased_at, expires_at)
VALUES (:task_id, :user_id, 'leased', :display_order, :now, :expires_at)
RETURNING id
""", stamps=("now", "expires_at"))

LOCK_TASK = Sql(f"SELECT {_TASK} FROM tasks t WHERE t.id = :task_id", lock=True, **_TASK_TYPES)
LOCK_ASSIGNMENT = Sql("""
SELECT id, task_id, user_id, state, display_order, expires_at FROM assignments
WHERE id = :assignment_id
""", lock=True, **_ASSIGNMENT_TYPES)
TASK_OF_ASSIGNMENT = Sql("SELECT task_id FROM assignments WHERE id = :assignment_id")

SUBMIT_ASSIGNMENT = Sql("""
UPDATE assignments SET state = 'submitted', finished_at = :now
WHERE id = :assignment_id AND state = 'leased'
""", stamps=("now",))

COUNT_SUBMISSION = Sql("""
UPDATE tasks SET done_labels = done_labels + 1, leased_labels = leased_labels - 1,
  state = CASE WHEN done_labels + 1 >= required_labels THEN 'closed' ELSE state END,
  closed_at = CASE WHEN done_labels + 1 >= required_labels THEN :now ELSE closed_at END
WHERE id = :task_id
RETURNING done_labels, leased_labels, required_labels
""", stamps=("now",))

EXTEND_LEASE = Sql("""
UPDATE assignments SET expires_at = :expires_at WHERE id = :assignment_id
RETURNING id, expires_at
""", stamps=("expires_at",), expires_at=UTCDateTime())

SKIP_ASSIGNMENT = Sql("""
UPDATE assignments SET state = 'skipped', finished_at = :now, skip_reason = :reason
WHERE id = :assignment_id AND state = 'leased'
""", stamps=("now",))

RELEASE_SLOTS = Sql("UPDATE tasks SET leased_labels = leased_labels - :n WHERE id = :task_id")

PROMPT_TEXT = Sql("SELECT id, text FROM prompts WHERE id = :prompt_id")

# The slot orders already given out on a compare task (its row is locked by the pick).
COMPARE_ORDERS = Sql("""
SELECT display_order FROM assignments
WHERE task_id = :task_id AND state IN ('leased', 'submitted')
""", display_order=JSON())
