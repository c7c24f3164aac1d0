"""The loop's JSON (GET /api/v1/loop): researchers and admins only; /loop is in pages.py."""

from fastapi import APIRouter

from app.auth.deps import STAFF, Staff
from app.db import DbSession
from app.loop import pages, service
from app.loop.schemas import LoopRead
from app.templating import add_nav

router = APIRouter()
add_nav("Loop", "/loop", STAFF,
        "Round after round: the feedback that went in, the reward model, PPO, people's win "
        "rates, and the reward-hacking watch.")


@router.get("/api/v1/loop", response_model=LoopRead)
def loop_json(db: DbSession, _: Staff) -> dict:
    """Every round, oldest first: data, RM, PPO, human win rates with CIs, the watch."""
    return service.loop(db=db)


router.include_router(pages.router)
