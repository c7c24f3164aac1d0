"""Bearer-token lookup: one round trip at the driver level, handing routes a real `User`."""

from datetime import timedelta

from sqlalchemy import select

from app.auth import service as auth
from app.auth.models import ApiToken, Role, User
from app.db import SessionLocal, utcnow
from tests.factories import make_user


def test_user_for_token_gives_a_loaded_user_of_the_session_and_notes_its_use(committed_db):
    user = make_user(committed_db, Role.researcher, held_out=True)
    _, token = auth.create_token(db=committed_db, user=user, name="script")
    committed_db.commit()
    db = SessionLocal()
    try:
        got = auth.user_for_token(db=db, token=token)
        assert got is not None and got is db.get(User, user.id)  # the session's own object
        assert (got.email, got.role, got.held_out, got.active) == (
            user.email, Role.researcher, True, True)
        assert got.created_at == user.created_at
        assert not db.dirty  # handed over as loaded: nothing to write back
        got.name = "Renamed"  # and it is a persistent object like any other
        db.commit()
        assert db.scalar(select(User.name).where(User.id == user.id)) == "Renamed"
        last_used = db.scalar(select(ApiToken.last_used_at).where(ApiToken.user_id == user.id))
        assert last_used is not None and utcnow() - last_used < timedelta(minutes=1)
    finally:
        db.close()


def test_user_for_token_refuses_unknown_revoked_and_inactive(committed_db):
    user = make_user(committed_db)
    row, token = auth.create_token(db=committed_db, user=user)
    committed_db.commit()
    assert auth.user_for_token(db=committed_db, token=token + "x") is None
    user.active = False
    committed_db.commit()
    assert auth.user_for_token(db=committed_db, token=token) is None
    user.active = True
    row.revoked_at = utcnow()
    committed_db.commit()
    assert auth.user_for_token(db=committed_db, token=token) is None
