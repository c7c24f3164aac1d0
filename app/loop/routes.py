"""The loop page (/loop) and its JSON (GET /api/v1/loop): researchers and admins only."""

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from app.auth.deps import STAFF, Staff
from app.db import DbSession
from app.loop import service
from app.loop.schemas import LoopRead
from app.templating import add_nav, render

router = APIRouter()
add_nav("Loop", "/loop", STAFF,
        "Round after round: the feedback that went in, the reward model, PPO, people's win "
        "rates, and the reward-hacking watch.")


@router.get("/api/v1/loop", response_model=LoopRead)
def loop_json(db: DbSession, _: Staff) -> dict:
    """Every round, oldest first: data, RM, PPO, human win rates with CIs, the watch."""
    return service.loop(db=db)


@router.get("/loop", response_class=HTMLResponse)
def loop_page(request: Request, db: DbSession, _: Staff) -> Response:
    """The loop's table and charts; the page fetches the JSON again every few seconds."""
    return render(request, "loop/index.html", loop=LoopRead.model_validate(service.loop(db=db)))
