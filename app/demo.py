"""Demo data for a first run: one user per role and a few sample prompts."""

import hashlib
import os
import secrets
from pathlib import Path

from sqlalchemy import func, select

from app.auth import service as auth
from app.auth.models import Role, User
from app.db import session_scope
from app.prompts.models import Prompt, PromptSource, Split

SAMPLE_PROMPTS = (
    ("Write a short poem about a lighthouse keeper who befriends a storm.", "generation"),
    ("Explain the moon landing to a six year old in a few sentences.", "open_qa"),
    ("List five ideas for a rainy-day activity with toddlers.", "brainstorming"),
    ("Summarise the plot of Romeo and Juliet in three sentences.", "summarization"),
    ("Rewrite this sentence to sound more formal: 'gonna be late, sorry!'", "rewrite"),
    ("Is the following review positive or negative? 'The soup was cold and bland.'", "classification"),
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
        for i, (text, category) in enumerate(SAMPLE_PROMPTS):
            db.add(Prompt(
                text=text, text_hash=hashlib.sha256(text.lower().encode()).hexdigest(),
                source=PromptSource.imported, end_user_id=f"demo-{i % 4}", category=category,
                split=Split.train,
            ))
    creds_file.parent.mkdir(parents=True, exist_ok=True)
    creds_file.write_text("\n".join(lines) + "\n")
    os.chmod(creds_file, 0o600)
    return len(SAMPLE_PROMPTS)
