"""The loop pages: HTML and the forms they post (routes.py is the JSON API and
includes these)."""

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from app.auth.deps import Staff
from app.db import DbSession
from app.loop import service
from app.loop.schemas import LoopRead
from app.templating import render

router = APIRouter()


@router.get("/loop", response_class=HTMLResponse)
def loop_page(request: Request, db: DbSession, _: Staff) -> Response:
    """The loop's table and charts; the page fetches the JSON again every few seconds."""
    return render(request, "loop/index.html", loop=LoopRead.model_validate(service.loop(db=db)))
