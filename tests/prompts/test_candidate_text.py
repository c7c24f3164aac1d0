"""A model output with NUL in it is stored (NUL shown as U+FFFD) instead of failing the job
that sampled it: PostgreSQL's text refuses NUL, and the tiny model's byte-level vocabulary
samples it now and then."""

from sqlalchemy import select

from app.prompts.models import Candidate
from tests.factories import make_prompt


def test_a_sampled_nul_is_stored_as_the_replacement_character(db):
    prompt = make_prompt(db)
    db.add(Candidate(prompt_id=prompt.id, text="a\x00b\x00", model=None, sampling_params={}))
    db.flush()
    db.expire_all()
    stored = db.scalars(select(Candidate.text).where(Candidate.prompt_id == prompt.id)).one()
    assert stored == "a\ufffdb\ufffd"
