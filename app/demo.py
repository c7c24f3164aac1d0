"""Demo data for a first run: one user per role, sample prompts with candidate outputs, and
labeling work of every kind so the labeler account has something to do."""

import os
import secrets
from pathlib import Path

from sqlalchemy import func, select

import app.models  # noqa: F401 - every table, so foreign keys resolve outside the web app
from app.auth import service as auth
from app.auth.models import Role, User
from app.db import session_scope
from app.prompts import service as prompts_service
from app.prompts.models import Candidate, Prompt, PromptKind, PromptSource

SAMPLE_PROMPTS = (
    ("Write a short poem about a lighthouse keeper who befriends a storm.", "generation"),
    ("Explain the moon landing to a six year old in a few sentences.", "open_qa"),
    ("List five ideas for a rainy-day activity with toddlers.", "brainstorming"),
    ("Summarise the plot of Romeo and Juliet in three sentences.", "summarization"),
    ("Rewrite this sentence to sound more formal: 'gonna be late, sorry!'", "rewrite"),
    ("Is the following review positive or negative? 'The soup was cold and bland.'",
     "classification"),
    ("What are the main causes of the French Revolution?", "open_qa"),
    ("Extract every date from: 'We met on 3 May 2021 and again on 14 June 2022.'", "extraction"),
)


def seed(*, creds_file: Path) -> int:
    """Create the demo users and prompts on an empty database; returns prompts created."""
    with session_scope() as db:
        if db.scalar(select(func.count()).select_from(User)):
            return 0
        lines = []
        for role in (Role.admin, Role.researcher, Role.labeler):
            password = secrets.token_urlsafe(9)
            email = f"{role.value}@example.com"
            auth.create_user(db=db, email=email, password=password, role=role,
                             name=f"Demo {role.value}")
            lines.append(f"{role.value:<11} {email:<26} {password}")
        # Through the importer, so the demo prompts obey the same rules as real ones.
        prompts_service.import_objects(db=db, source=PromptSource.imported, objects=[
            {"text": text, "end_user_id": f"demo-{i % 4}", "category": category}
            for i, (text, category) in enumerate(SAMPLE_PROMPTS)
        ])
        _seed_tasks(db, list(db.scalars(select(Prompt).order_by(Prompt.id))))
    creds_file.parent.mkdir(parents=True, exist_ok=True)
    creds_file.write_text("\n".join(lines) + "\n")
    os.chmod(creds_file, 0o600)
    return len(SAMPLE_PROMPTS)


# Sample outputs of varying quality for the first prompts, so the rank and rate screens have
# something to show on a first run.
SAMPLE_OUTPUTS = (
    (
        "The keeper lit his lamp; the storm came knocking,\nnot to drown him, only to talk.\n"
        "All night they traded stories of ships and stars,\nand by dawn the sea was calm.",
        "A lighthouse keeper met a storm. They became friends. The end.",
        "Storms are caused by warm, moist air rising quickly. Lighthouses use Fresnel lenses.",
        "Beacon bright on the rocky shore,\nthe storm howled once and then no more,\n"
        "it sat beside the keeper's light,\nand learned to love the quiet night.",
        "I cannot write poems.",
    ),
    (
        "Astronauts flew a big rocket all the way to the Moon. Two of them walked on it, "
        "bounced around because it pulls on you less than Earth, planted a flag, and flew home.",
        "In 1969, Apollo 11's lunar module Eagle landed in the Sea of Tranquility; Armstrong and "
        "Aldrin performed an EVA of about two and a half hours.",
        "People went to the Moon in a rocket. They walked on it and came back. It was in 1969.",
        "The Moon landing was filmed in a studio.",
    ),
    (
        "1. Build a blanket fort\n2. Bake muffins together\n3. Indoor treasure hunt\n"
        "4. Dance party\n5. Paint with sponges",
        "Watch TV all day.",
        "1. Puzzles\n2. Play-dough\n3. Reading\n4. Singing\n5. Stacking cups",
        "Go jump in puddles with rain boots on, sing songs, read a book, do a puzzle, bake.",
    ),
)


def _seed_tasks(db, prompts: list[Prompt]) -> None:  # type: ignore[no-untyped-def]
    """Rank tasks on the first prompts, rate tasks on some outputs, demonstrate and
    write-prompt tasks, through the queue service so the rules are the real ones."""
    from app.queue import service as queue

    rate_ids: list[int] = []
    for prompt, outputs in zip(prompts, SAMPLE_OUTPUTS, strict=False):
        candidates = [Candidate(prompt_id=prompt.id, text=t, model="demo") for t in outputs]
        db.add_all(candidates)
        db.flush()
        ids = [c.id for c in candidates]
        queue.create_rank_task(db=db, prompt_id=prompt.id, candidate_ids=ids, overlap=2,
                               priority=10)
        rate_ids.append(ids[0])
    queue.create_rate_tasks(db=db, candidate_ids=rate_ids, overlap=2)
    queue.create_demonstrate_tasks(db=db, prompt_ids=[p.id for p in prompts[3:]], overlap=1)
    for kind in (PromptKind.plain, PromptKind.few_shot):
        queue.create_write_prompt_tasks(db=db, prompt_kind=kind, count=1)
