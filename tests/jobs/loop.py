"""Feedback for the loop's tests, submitted through the real task API as labelers would:
demonstrations, and rankings by a hidden rule (more of the letter "a" is better)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.auth import service as auth
from app.auth.models import Role
from app.queue import creation
from app.queue.models import TaskKind
from tests.factories import make_user
from tests.labeling.factories import make_prompt, make_task

SMALL = {  # a round small enough for a test on the tiny model
    "sft": {"epochs": 1, "batch_size": 4, "eval_prompts": 2, "max_len": 128},
    "rm": {"prompts_per_step": 4, "max_len": 128},
    "ppo": {"steps": 2, "rollout_size": 4, "minibatch_size": 4, "ppo_epochs": 1,
            "max_new_tokens": 8, "heldout_texts": 4, "eval_every": 1, "ptx_batch_size": 2,
            "ptx_max_len": 48},
}


def score(text: str) -> int:
    """The hidden preference."""
    return text.count("a")


def seed_tasks(db: Session, *, n_demos: int = 6, n_ranks: int = 6) -> None:
    """Train prompts with demonstrate tasks and rank tasks of 4 outputs."""
    prompts = [make_prompt(db) for _ in range(n_demos)]
    creation.create_demonstrate_tasks(db=db, prompt_ids=[p.id for p in prompts], overlap=1)
    for i in range(n_ranks):
        make_task(db, TaskKind.rank, k=4, texts=[
            f"answer {i}: " + "a" * j + " b" * (4 - j) for j in range(4)])
    db.commit()


def labeler_token(db: Session) -> str:
    """A new labeler and a bearer token for it."""
    user = make_user(db, Role.labeler)
    _, token = auth.create_token(db=db, user=user, name="loop-test")
    db.commit()
    return token


def label_everything(client: Any, token: str, kinds: tuple[str, ...] = ("demonstrate", "rank"),
                     limit: int = 200) -> dict[str, int]:
    """Lease and submit tasks of these kinds until none is left; returns counts by kind."""
    headers = {"Authorization": f"Bearer {token}"}
    done = {k: 0 for k in kinds}
    for kind in kinds:
        for n in range(limit):
            got = client.get(f"/api/v1/tasks/next?kind={kind}", headers=headers)
            if got.status_code == 204:
                break
            assert got.status_code == 200, got.text
            task = got.json()
            body: dict[str, Any] = {"assignment_id": task["assignment_id"],
                                    "idempotency_key": f"k-{kind}-{task['task_id']}-{n}",
                                    "seconds_spent": 5}
            if kind == "demonstrate":
                body["text"] = "a kind and accurate answer, as a person would write it"
            else:
                ordered = sorted(task["candidates"], key=lambda c: -score(c["text"]))
                body["ranking"] = [[c["id"]] for c in ordered]
                body["ratings"] = {str(c["id"]): {"likert": 7 - i, "flags": []}
                                   for i, c in enumerate(ordered)}
            sent = client.post(f"/api/v1/tasks/{task['task_id']}/submit", json=body,
                               headers=headers)
            assert sent.status_code in (200, 201), sent.text
            done[kind] += 1
    return done
