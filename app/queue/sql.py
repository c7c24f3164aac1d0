"""The hot-path SQL of the queue, shared by the service and bench/bench_queue.py.

Written as SQL rather than built by the ORM so the statement the benchmark times directly
through psycopg is byte for byte the one the API runs (docs/queue.md explains the plan).
"""

# The filter starts with the partial indexes' predicate (app/queue/models.OPEN)
# so the planner can use them; `OFFSET 0` keeps NOT EXISTS a per-task probe of
# uq_assignments_task_user instead of letting it become an anti-join over the user's
# whole history.
_PICK = """
SELECT t.* FROM tasks t
WHERE {kind} t.state = 'open' AND t.done_labels + t.leased_labels < t.required_labels
  AND NOT EXISTS (
    SELECT 1 FROM assignments a WHERE a.task_id = t.id AND a.user_id = :user_id {offset}
  )
ORDER BY t.priority DESC, t.id
LIMIT 1 {lock}
"""


def pick_sql(*, dialect: str, with_kind: bool) -> str:
    """The next-task pick for this dialect, with or without a kind filter."""
    postgres = dialect == "postgresql"
    return _PICK.format(
        kind="t.kind = :kind AND" if with_kind else "",
        # SQLite needs LIMIT before OFFSET; its single writer serialises leases anyway.
        offset="OFFSET 0" if postgres else "LIMIT -1 OFFSET 0",
        lock="FOR UPDATE SKIP LOCKED" if postgres else "",
    )


# The claim re-checks the free slot: on PostgreSQL the row is already locked so it always
# succeeds; on SQLite it is the first write, taken under the database write lock, so two
# leases racing for the last slot cannot both win.
CLAIM = """
UPDATE tasks SET leased_labels = leased_labels + 1
WHERE id = :task_id AND state = 'open' AND done_labels + leased_labels < required_labels
"""

LIVE_LEASE = """
SELECT a.* FROM assignments a JOIN tasks t ON t.id = a.task_id
WHERE a.user_id = :user_id AND a.state = 'leased' AND a.expires_at > :now {kind}
ORDER BY a.id LIMIT 1
"""

EXPIRED = """
SELECT id, task_id FROM assignments
WHERE state = 'leased' AND expires_at <= :now
ORDER BY expires_at LIMIT :limit
"""

INSERT_ASSIGNMENT = """
INSERT INTO assignments (task_id, user_id, state, display_order, leased_at, expires_at)
VALUES (:task_id, :user_id, 'leased', :display_order, :now, :expires_at)
RETURNING id
"""

LOCK_TASK = "SELECT id FROM tasks WHERE id = :task_id FOR UPDATE"
LOCK_ASSIGNMENT = "SELECT * FROM assignments WHERE id = :assignment_id FOR UPDATE"

SUBMIT_ASSIGNMENT = """
UPDATE assignments SET state = 'submitted', finished_at = :now
WHERE id = :assignment_id AND state = 'leased'
"""

COUNT_SUBMISSION = """
UPDATE tasks SET done_labels = done_labels + 1, leased_labels = leased_labels - 1,
  state = CASE WHEN done_labels + 1 >= required_labels THEN 'closed' ELSE state END,
  closed_at = CASE WHEN done_labels + 1 >= required_labels THEN :now ELSE closed_at END
WHERE id = :task_id
RETURNING done_labels, leased_labels, required_labels
"""
