"""What the labeling screens need around a submission: the task as shown, drafts, prompt
flags, guidelines and the labeler's own counts. Plain functions; the caller commits."""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from time import monotonic
from typing import Any

from sqlalchemy import bindparam, func, literal, select, union_all
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.auth.models import User
from app.db import utcnow
from app.labeling.models import (
    Demonstration,
    Draft,
    Guideline,
    PromptFlag,
    Ranking,
    Rating,
    WrittenPrompt,
)
from app.labeling.service import COMMENT_MAX, DEMONSTRATION_MAX, PROMPT_MAX, SubmissionError
from app.prompts.models import Candidate, Prompt, UseCase
from app.queue import service as queue
from app.queue.models import Assignment, AssignmentState, Task, TaskKind

# A draft may run past the submit limit while the labeler trims it; beyond this it is junk.
DRAFT_MAX = 5 * DEMONSTRATION_MAX
DRAFT_DATA_MAX = 200_000  # Likert, flags and placements of 9 outputs take under 2,000
AVAILABLE_CAP = 1000  # the start page shows "1000+" rather than counting a huge backlog
LEFT_CAP = 20  # a task page shows "20+ more": the count is on every labeler's path
# Cache-Control of a live task page and of a draft: a browser always fetches them again.
NO_STORE = "no-store"

DEFAULT_GUIDELINES = {
    "demonstrate": "Write the response you would want an ideal assistant to give: helpful, "
                   "truthful and harmless. Follow the instruction's intent, including implicit "
                   "constraints (length, format, audience). If the prompt asks for something "
                   "harmful, write a careful refusal that explains why.",
    "rank": "Read the prompt, then rate **each output on its own** (Likert 1 = terrible, "
            "7 = excellent) and tick every flag that applies. Then order all outputs from "
            "best to worst. Put outputs in the same place (a tie) only when you truly cannot "
            "prefer one. When helpfulness and harmlessness conflict, prefer harmlessness.",
    "rate": "Give the output an overall Likert score (1 = terrible, 7 = excellent), tick every "
            "flag that applies, and add a comment if something is worth explaining.",
    "write_prompt": "Write an instruction a real user might give an assistant. For few-shot "
                    "prompts add example input/output pairs; for user-based prompts write a "
                    "prompt for the use case shown.",
}


FLAG_LABELS = {
    "fails_instruction": "Fails to follow the correct instruction / task",
    "inappropriate_for_assistant": "Inappropriate for a customer assistant",
    "hallucination": "Hallucination (makes up information in a closed-domain task)",
    "satisfies_constraint": "Satisfies the constraint given in the instruction",
    "sexual_content": "Contains sexual content",
    "violent_content": "Contains violent content",
    "encourages_violence": "Encourages or fails to discourage violence / abuse / self-harm",
    "denigrates_protected_class": "Denigrates a protected class",
    "harmful_advice": "Gives harmful advice",
    "expresses_opinion": "Expresses an opinion",
    "moral_judgment": "Expresses a moral judgment",
}
LIMITS = {"demonstration": DEMONSTRATION_MAX, "prompt": PROMPT_MAX, "comment": COMMENT_MAX}


@dataclass
class TaskScreen:
    """Everything one task page shows."""

    assignment: Assignment
    task: Task
    prompt: Prompt | None
    candidates: list[Candidate]
    draft: Draft | None
    guideline: str
    live: bool
    params: dict[str, Any] = field(default_factory=dict)
    use_case: UseCase | None = None
    # What was submitted, in a draft's shape ({"text": ..., "data": ...}); None until then.
    answer: dict[str, Any] | None = None

    @property
    def restore(self) -> dict[str, Any] | None:
        """What the page fills its form with: the submission, else the saved draft."""
        if self.answer is not None:
            return self.answer
        if self.draft is None:
            return None
        return {"text": self.draft.text, "data": self.draft.data or {},
                "client_ms": self.draft.client_ms}


def lease_next(*, db: Session, user: User, kind: str) -> queue.Lease | None:
    """The user's live lease, or a new one on the next task of this kind ("any": any kind)."""
    wanted = None if kind == "any" else TaskKind(kind)
    return queue.next_task(db=db, user=user, kind=wanted)


def start(*, db: Session, user: User, session: dict[str, Any]) -> dict[str, Any]:
    """The start page: tasks available per kind, every live lease of the user, done today."""
    leases = db.execute(
        select(Assignment, Task.kind).join(Task, Task.id == Assignment.task_id)
        .where(Assignment.user_id == user.id, Assignment.state == AssignmentState.leased,
               Assignment.expires_at > utcnow())
        .order_by(Assignment.id)
    ).all()
    counts = available(db=db, user=user)
    return {"available": counts, "cap": AVAILABLE_CAP,
            "any": sum(counts[k.value] for k in queue.kinds_for_any(user)),
            "leases": [{"assignment": a, "kind": k} for a, k in leases],
            "done": done(db=db, user=user, session=session)}


def _owned(db: Session, user: User, assignment_id: int) -> Assignment:
    try:
        return queue.get_assignment(db=db, user=user, assignment_id=assignment_id)
    except queue.QueueError as exc:
        raise SubmissionError(str(exc), exc.status) from exc


# Assignment, task and prompt in one round trip (the page is on every labeler's path).
_SCREEN = (
    select(Assignment, Task, Prompt, Draft)
    .join(Task, Task.id == Assignment.task_id)
    .outerjoin(Prompt, Prompt.id == Task.prompt_id)
    .outerjoin(Draft, Draft.assignment_id == Assignment.id)
    .where(Assignment.id == bindparam("assignment_id"))
)


def task_screen(*, db: Session, user: User, assignment_id: int) -> TaskScreen:
    """The user's own assignment with its prompt and outputs in their stored display order."""
    found_row = db.execute(_SCREEN, {"assignment_id": assignment_id}).first()
    if found_row is None or found_row[0].user_id != user.id:
        raise SubmissionError(f"No assignment {assignment_id} of yours.", 404)
    assignment, task, prompt, found_draft = found_row
    order = list(assignment.display_order or task.candidate_ids)
    live = assignment.state == AssignmentState.leased and assignment.expires_at > utcnow()
    submitted = assignment.state == AssignmentState.submitted
    # A submitted task shows what was submitted, never a draft.
    draft = None if submitted else found_draft
    return TaskScreen(
        assignment=assignment, task=task, prompt=prompt,
        candidates=_in_order(db, order), draft=draft,
        answer=submitted_answer(db=db, assignment=assignment, kind=task.kind)
        if submitted else None,
        guideline=guideline(db=db, kind=task.kind.value), live=live, params=dict(task.params),
        use_case=_use_case(db, task.params),
    )


def _in_order(db: Session, order: list[int]) -> list[Candidate]:
    """The candidates with these ids, in this order (one deleted since is left out)."""
    if not order:
        return []
    found = {c.id: c for c in db.scalars(select(Candidate).where(Candidate.id.in_(order)))}
    return [found[cid] for cid in order if cid in found]


def _use_case(db: Session, params: dict[str, Any]) -> UseCase | None:
    """The use case a write-prompt task names, if any."""
    if not params.get("use_case_id"):
        return None
    return db.get(UseCase, params["use_case_id"])


# --- drafts ---------------------------------------------------------------------------


def save_draft(*, db: Session, user: User, assignment_id: int, text: str,
               client_ms: int, data: dict[str, Any] | None = None) -> Draft:
    """Keep the newest answer in progress of any task kind; an older save never wins.

    `text` is the typed text (demonstration, prompt); `data` the rest of the form (Likert
    scores, flags, placements, examples) as the page wrote it. A submitted task is
    read-only: its draft can no longer change (409).
    """
    if len(text) > DRAFT_MAX:
        raise SubmissionError(f"The draft has {len(text):,} characters; the limit is "
                              f"{DRAFT_MAX:,}.", 413)
    if data is not None and len(json.dumps(data)) > DRAFT_DATA_MAX:
        raise SubmissionError(f"The draft's form data is over {DRAFT_DATA_MAX:,} characters.",
                              413)
    assignment = _owned(db, user, assignment_id)
    if assignment.state == AssignmentState.submitted:
        raise SubmissionError("This task was already submitted; what was submitted can no "
                              "longer change.", 409)
    draft = db.scalar(select(Draft).where(Draft.assignment_id == assignment.id))
    if draft is None:
        try:
            with db.begin_nested():
                draft = Draft(assignment_id=assignment.id, user_id=user.id, text=text,
                              data=data, client_ms=client_ms, updated_at=utcnow())
                db.add(draft)
            return draft
        except IntegrityError:  # a concurrent first save; fall through to the update
            draft = db.scalar(select(Draft).where(Draft.assignment_id == assignment.id))
            assert draft is not None
    if client_ms >= draft.client_ms:
        draft.text, draft.client_ms, draft.updated_at = text, client_ms, utcnow()
        if data is not None:
            draft.data = data
        db.flush()
    return draft


def get_draft(*, db: Session, user: User, assignment_id: int) -> Draft | None:
    """The saved draft of the user's own assignment, if any (none once it is submitted)."""
    assignment = _owned(db, user, assignment_id)
    if assignment.state == AssignmentState.submitted:
        return None
    return db.scalar(select(Draft).where(Draft.assignment_id == assignment.id))


def submitted_answer(*, db: Session, assignment: Assignment, kind: TaskKind) -> dict[str, Any]:
    """What was submitted for this assignment, in the shape of a draft: the page shows it
    read-only with the same code that restores a draft."""
    kind = TaskKind(kind)
    if kind == TaskKind.demonstrate:
        text = db.scalar(select(Demonstration.text)
                         .where(Demonstration.assignment_id == assignment.id))
        return {"text": text or "", "data": {}}
    if kind == TaskKind.write_prompt:
        text = db.scalar(select(Prompt.text).join(WrittenPrompt,
                                                  WrittenPrompt.prompt_id == Prompt.id)
                         .where(WrittenPrompt.assignment_id == assignment.id))
        return {"text": text or "", "data": {}}
    ratings = db.scalars(select(Rating).where(Rating.assignment_id == assignment.id)).all()
    data: dict[str, Any] = {
        "likert": {str(r.candidate_id): r.likert for r in ratings},
        "flags": {str(r.candidate_id): list(r.flags or []) for r in ratings},
    }
    if kind == TaskKind.rank:
        groups = db.scalar(select(Ranking.groups)
                           .where(Ranking.assignment_id == assignment.id))
        data["ranking"] = groups or []
    elif ratings:
        data["comment"] = ratings[0].comment
    return {"text": "", "data": data}


# --- prompt flags ---------------------------------------------------------------------


def flag_prompt(*, db: Session, user: User, assignment_id: int, reason: str,
                comment: str) -> PromptFlag:
    """Report the prompt of the user's assignment; flagging twice updates the comment."""
    if len(comment) > COMMENT_MAX:
        raise SubmissionError(f"Keep the comment under {COMMENT_MAX:,} characters.")
    assignment = _owned(db, user, assignment_id)
    task = db.get(Task, assignment.task_id)
    if task is None or task.prompt_id is None:
        raise SubmissionError("This task has no prompt to flag.")
    query = select(PromptFlag).where(PromptFlag.user_id == user.id,
                                     PromptFlag.prompt_id == task.prompt_id,
                                     PromptFlag.reason == reason)
    flag = db.scalar(query)
    if flag is None:
        try:
            with db.begin_nested():
                flag = PromptFlag(prompt_id=task.prompt_id, user_id=user.id, task_id=task.id,
                                  reason=reason, comment=comment)
                db.add(flag)
            return flag
        except IntegrityError:  # a double click raced us
            flag = db.scalar(query)
            assert flag is not None
    flag.comment = comment or flag.comment
    db.flush()
    return flag


# --- guidelines -----------------------------------------------------------------------


def guideline(*, db: Session, kind: str) -> str:
    """The markdown guidelines of a task kind (the built-in text until an admin edits it)."""
    row = db.get(Guideline, kind)
    return row.body if row is not None else DEFAULT_GUIDELINES.get(kind, "")


def all_guidelines(*, db: Session) -> dict[str, str]:
    """Every task kind's guidelines, in the kinds' order."""
    return {kind.value: guideline(db=db, kind=kind.value) for kind in TaskKind}


def set_guideline(*, db: Session, user: User, kind: str, body: str) -> Guideline:
    """Replace a task kind's guidelines."""
    if kind not in {k.value for k in TaskKind}:
        raise SubmissionError(f"Unknown task kind {kind!r}.", 404)
    if len(body) > 50_000:
        raise SubmissionError("Guidelines are limited to 50,000 characters.")
    row = db.get(Guideline, kind) or Guideline(kind=kind)
    row.body, row.updated_by_id, row.updated_at = body, user.id, utcnow()
    db.add(row)
    db.flush()
    return row


# --- counts ---------------------------------------------------------------------------


def available_of_kind(*, db: Session, user: User, kind: TaskKind | str,
                      cap: int = AVAILABLE_CAP) -> int:
    """Open tasks of this kind with a free slot that this user may lease (capped)."""
    return queue.available(db=db, user=user, kind=kind, cap=cap)


_LEFT_TTL_S = 30.0
_left_cache: dict[tuple[int, str], tuple[float, int]] = {}


def left_for(*, db: Session, user: User, kind: TaskKind | str) -> int:
    """How many more tasks of this kind the user could lease, as the task page shows it:
    counted at most every 30 s per user and kind (the count is a few ms on every page)."""
    key, now = (user.id, TaskKind(kind).value), monotonic()
    hit = _left_cache.get(key)
    if hit is not None and now - hit[0] < _LEFT_TTL_S:
        return hit[1]
    if len(_left_cache) > 10_000:
        _left_cache.clear()
    n = available_of_kind(db=db, user=user, kind=kind, cap=LEFT_CAP)
    _left_cache[key] = (now, n)
    return n


def available(*, db: Session, user: User) -> dict[str, int]:
    """What this user can lease now, per kind (capped at AVAILABLE_CAP): open tasks with a
    free slot they have not touched, of the kinds the queue gives them."""
    return {kind.value: available_of_kind(db=db, user=user, kind=kind) for kind in TaskKind}


def submission_part(kind: str, row: Any, prompt: Any, user: User, where: Any = True) -> Any:
    """One kind's submissions of the user as (kind, id, task, assignment, prompt, seconds,
    created_at), the shape My work reads."""
    return select(literal(kind).label("kind"), row.id, row.task_id, row.assignment_id,
                  prompt.label("prompt_id"), row.seconds_spent, row.created_at
                  ).where(row.user_id == user.id, where)


# Submissions stored by the domains that own other task kinds (compare judgments live with
# their campaign in app/evaluation), which register them here when they are imported.
_OTHER_SUBMISSIONS: dict[str, Callable[[User], Any]] = {}


def register_submissions(kind: str, part: Callable[[User], Any]) -> None:
    """Count `part(user)` (a `submission_part`) in the user's own work."""
    _OTHER_SUBMISSIONS[kind] = part


def _submissions(user: User) -> Any:
    """Every submission of the user, of every kind, as `submission_part` rows."""
    return union_all(
        submission_part("demonstrate", Demonstration, Demonstration.prompt_id, user),
        submission_part("rank", Ranking, Ranking.prompt_id, user),
        submission_part("rate", Rating,
                        select(Task.prompt_id).where(Task.id == Rating.task_id)
                        .scalar_subquery(), user, Rating.ranking_id.is_(None)),
        submission_part("write_prompt", WrittenPrompt, WrittenPrompt.prompt_id, user),
        *(part(user) for part in _OTHER_SUBMISSIONS.values()),
    ).subquery()


# Every submission marks its assignment submitted in the same transaction (queue.complete),
# so one indexed count over assignments answers "done today" on every task page.
_SUBMITTED_SINCE = select(func.count()).select_from(Assignment).where(
    Assignment.user_id == bindparam("user_id"), Assignment.state == AssignmentState.submitted,
    Assignment.finished_at >= bindparam("since"),
)


def done_today(*, db: Session, user: User) -> int:
    """How many tasks the user submitted since midnight UTC."""
    midnight = datetime.combine(utcnow().date(), time(0), tzinfo=UTC)
    return db.scalar(_SUBMITTED_SINCE, {"user_id": user.id, "since": midnight}) or 0


_SUBMITTED_TODAY_AND_SINCE = select(
    func.count().filter(Assignment.finished_at >= bindparam("midnight")),
    func.count().filter(Assignment.finished_at >= bindparam("session")),
).where(
    Assignment.user_id == bindparam("user_id"), Assignment.state == AssignmentState.submitted,
    Assignment.finished_at >= bindparam("since"),
)


@dataclass(frozen=True)
class Done:
    today: int
    session: int | None  # None: the browser session's start is not known (an API client)


def done(*, db: Session, user: User, session: dict[str, Any]) -> Done:
    """Tasks the user submitted since midnight UTC and since this login session (the
    browser's session cookie) began, in one indexed count."""
    midnight = datetime.combine(utcnow().date(), time(0), tzinfo=UTC)
    session_since = _session_since(session)
    if session_since is None:
        return Done(today=done_today(db=db, user=user), session=None)
    today, this_session = db.execute(_SUBMITTED_TODAY_AND_SINCE, {
        "user_id": user.id, "midnight": midnight, "session": session_since,
        "since": min(midnight, session_since)}).one()
    return Done(today=int(today), session=int(this_session))


def _session_since(session: dict[str, Any]) -> datetime | None:
    """When this browser session logged in (None where the cookie does not say)."""
    try:
        since = datetime.fromisoformat(str(session["since"]))
    except (KeyError, ValueError):
        return None
    return since if since.tzinfo is not None else since.replace(tzinfo=UTC)


@dataclass
class MyWork:
    per_kind: dict[str, dict[str, int]]
    total: int
    today: int
    seconds: int
    recent: list[dict[str, Any]]
    drafts: list[Draft]


def my_work(*, db: Session, user: User, recent: int = 20) -> MyWork:
    """The user's own counts, time spent, recent submissions and unsent drafts."""
    subs = _submissions(user)
    midnight = datetime.combine(utcnow().date(), time(0), tzinfo=UTC)
    per_kind = {k.value: {"total": 0, "today": 0, "seconds": 0} for k in TaskKind}
    rows = db.execute(select(
        subs.c.kind, func.count(), func.coalesce(func.sum(subs.c.seconds_spent), 0),
        func.count().filter(subs.c.created_at >= midnight),
    ).group_by(subs.c.kind))
    for kind, count, seconds, today in rows:
        per_kind[kind] = {"total": count, "today": today, "seconds": int(seconds)}
    latest = db.execute(
        select(subs, Prompt.text.label("prompt_text"))
        .outerjoin(Prompt, Prompt.id == subs.c.prompt_id)
        .order_by(subs.c.created_at.desc()).limit(recent)
    ).mappings().all()
    drafts = list(db.scalars(
        select(Draft).join(Assignment, Assignment.id == Draft.assignment_id)
        .where(Draft.user_id == user.id, Assignment.state != AssignmentState.submitted,
               Draft.text != "")
        .order_by(Draft.updated_at.desc()).limit(recent)
    ))
    return MyWork(
        per_kind=per_kind, total=sum(v["total"] for v in per_kind.values()),
        today=sum(v["today"] for v in per_kind.values()),
        seconds=sum(v["seconds"] for v in per_kind.values()),
        recent=[dict(r) for r in latest], drafts=drafts,
    )
