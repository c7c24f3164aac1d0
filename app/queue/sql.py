"""The hot-path SQL of the queue, shared by the service and bench/bench_queue.py.

Written as SQL rather than built by the ORM: the service runs these at the driver level
(`app.statements.Sql`), and the statement the benchmark times directly through psycopg is
byte for byte the one the API runs (docs/queue.md explains the plan). Each read names its
row type (the columns, in order); each write names the rows it changes.
"""

from datetime import datetime
from functools import cache
from typing import Any, NamedTuple

from app.queue.models import Assignment, Task
from app.statements import Sql


class TaskRow(NamedTuple):
    """A task as a lease and a submit read it (not gold_answer: it never reaches a labeler)."""

    id: int
    kind: str
    prompt_id: int | None
    candidate_ids: list[int]
    params: dict[str, Any]


class LeaseRow(NamedTuple):
    """A live assignment with what its page needs of the task."""

    id: int
    task_id: int
    display_order: list[int]
    expires_at: datetime
    kind: str
    prompt_id: int | None
    params: dict[str, Any]


class AssignmentRow(NamedTuple):
    id: int
    task_id: int
    user_id: int
    state: str
    display_order: list[int]
    expires_at: datetime


class Lapsed(NamedTuple):
    id: int
    task_id: int


class NewRow(NamedTuple):
    id: int


class TaskOf(NamedTuple):
    task_id: int


class Counters(NamedTuple):
    done_labels: int
    leased_labels: int
    required_labels: int


class Extended(NamedTuple):
    id: int
    expires_at: datetime


class DisplayOrder(NamedTuple):
    display_order: list[int]


class PromptText(NamedTuple):
    id: int
    text: str


_TASK = "t.id, t.kind, t.prompt_id, t.candidate_ids, t.params"  # TaskRow's columns

# The filter starts with the partial indexes' predicate (app/queue/models.OPEN)
# so the planner can use them; `OFFSET 0` keeps NOT EXISTS a per-task probe of
# uq_assignments_task_user instead of letting it become an anti-join over the user's
# whole history.
_ELIGIBLE = """
FROM tasks t
WHERE {kind} t.state = 'open' AND t.done_labels + t.leased_labels < t.required_labels
  AND NOT EXISTS (
    SELECT 1 FROM assignments a WHERE a.task_id = t.id AND a.user_id = :user_id {offset}
  )
"""
_PICK = "SELECT {columns} " + _ELIGIBLE + """ORDER BY t.priority DESC, t.id
LIMIT 1 {lock}
"""
# How many tasks the pick could still give this user: the same filter, so a count on a
# page never disagrees with what the next lease hands out.
_AVAILABLE = "SELECT count(*) AS n FROM (SELECT 1 " + _ELIGIBLE + "LIMIT :cap) eligible"


def _judges(dialect: str) -> str:
    """A compare task's `params.judges` (held_out | all) as SQL."""
    if dialect == "postgresql":
        return "(t.params->>'judges')"
    return "json_extract(t.params, '$.judges')"


def _filter(dialect: str, with_kind: bool, compare_for_all: bool) -> dict[str, str]:
    kind = "t.kind = :kind AND" if with_kind else "t.kind <> 'compare' AND"
    if compare_for_all:
        kind += f" {_judges(dialect)} = 'all' AND"
    # SQLite needs LIMIT before OFFSET; its single writer serialises leases anyway.
    return {"kind": kind, "offset": "OFFSET 0" if dialect == "postgresql" else "LIMIT -1 OFFSET 0"}


def pick_sql(*, dialect: str, with_kind: bool, compare_for_all: bool = False) -> str:
    """The next-task pick for this dialect, with or without a kind filter.

    Without a kind, compare tasks are left out: a labeler gets them only by asking for
    them (held-out labelers do, app/queue/service.next_task). `compare_for_all`: only the
    compare tasks every labeler may judge, not those kept for held-out labelers.
    """
    return _PICK.format(columns=_TASK, **_filter(dialect, with_kind, compare_for_all),
                        lock="FOR UPDATE SKIP LOCKED" if dialect == "postgresql" else "")


@cache
def pick(dialect: str, with_kind: bool, compare_for_all: bool = False) -> Sql[TaskRow]:
    """The pick as a statement to run."""
    return Sql(pick_sql(dialect=dialect, with_kind=with_kind, compare_for_all=compare_for_all),
               TaskRow)


class Count(NamedTuple):
    n: int


@cache
def available(dialect: str, with_kind: bool, compare_for_all: bool = False) -> Sql[Count]:
    """How many tasks `pick` could give this user (at most `:cap`)."""
    return Sql(_AVAILABLE.format(**_filter(dialect, with_kind, compare_for_all)), Count)


# The claim re-checks the free slot: on PostgreSQL the row is already locked so it always
# succeeds; on SQLite it is the first write, taken under the database write lock, so two
# leases racing for the last slot cannot both win.
CLAIM = Sql("""
UPDATE tasks SET leased_labels = leased_labels + 1
WHERE id = :task_id AND state = 'open' AND done_labels + leased_labels < required_labels
""", changes={"task_id": Task})

# The user's live lease, with what its page needs of the task (a reload re-uses it).
_LIVE_LEASE = """
SELECT a.id, a.task_id, a.display_order, a.expires_at, t.kind, t.prompt_id, t.params
FROM assignments a JOIN tasks t ON t.id = a.task_id
WHERE a.user_id = :user_id AND a.state = 'leased' AND a.expires_at > :now {kind}
ORDER BY a.id LIMIT 1
"""
LIVE_LEASE = Sql(_LIVE_LEASE.format(kind=""), LeaseRow, stamps=("now",))
LIVE_LEASE_OF_KIND = Sql(_LIVE_LEASE.format(kind="AND t.kind = :kind"), LeaseRow,
                         stamps=("now",))

EXPIRED = Sql("""
SELECT id, task_id FROM assignments
WHERE state = 'leased' AND expires_at <= :now
ORDER BY expires_at LIMIT :limit
""", Lapsed, stamps=("now",))

INSERT_ASSIGNMENT = Sql("""
INSERT INTO assignments (task_id, user_id, state, display_order, leased_at, expires_at)
VALUES (:task_id, :user_id, 'leased', :display_order, :now, :expires_at)
RETURNING id
""", NewRow, stamps=("now", "expires_at"))

LOCK_TASK = Sql(f"SELECT {_TASK} FROM tasks t WHERE t.id = :task_id", TaskRow, lock=True)
LOCK_ASSIGNMENT = Sql("""
SELECT id, task_id, user_id, state, display_order, expires_at FROM assignments
WHERE id = :assignment_id
""", AssignmentRow, lock=True)
TASK_OF_ASSIGNMENT = Sql("SELECT task_id FROM assignments WHERE id = :assignment_id", TaskOf)

SUBMIT_ASSIGNMENT = Sql("""
UPDATE assignments SET state = 'submitted', finished_at = :now
WHERE id = :assignment_id AND state = 'leased'
""", stamps=("now",), changes={"assignment_id": Assignment})

COUNT_SUBMISSION = Sql("""
UPDATE tasks SET done_labels = done_labels + 1, leased_labels = leased_labels - 1,
  state = CASE WHEN done_labels + 1 >= required_labels THEN 'closed' ELSE state END,
  closed_at = CASE WHEN done_labels + 1 >= required_labels THEN :now ELSE closed_at END
WHERE id = :task_id
RETURNING done_labels, leased_labels, required_labels
""", Counters, stamps=("now",), changes={"task_id": Task})

EXTEND_LEASE = Sql("""
UPDATE assignments SET expires_at = :expires_at WHERE id = :assignment_id
RETURNING id, expires_at
""", Extended, stamps=("expires_at",), changes={"assignment_id": Assignment})

SKIP_ASSIGNMENT = Sql("""
UPDATE assignments SET state = 'skipped', finished_at = :now, skip_reason = :reason
WHERE id = :assignment_id AND state = 'leased'
""", stamps=("now",), changes={"assignment_id": Assignment})

RELEASE_SLOTS = Sql("UPDATE tasks SET leased_labels = leased_labels - :n WHERE id = :task_id",
                    changes={"task_id": Task})

PROMPT_TEXT = Sql("SELECT id, text FROM prompts WHERE id = :prompt_id", PromptText)

# The slot orders already given out on a compare task (its row is locked by the pick).
COMPARE_ORDERS = Sql("""
SELECT display_order FROM assignments
WHERE task_id = :task_id AND state IN ('leased', 'submitted')
""", DisplayOrder)
