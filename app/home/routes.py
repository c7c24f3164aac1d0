"""The start page (pages.py): one tile per place this role can go."""


from fastapi import APIRouter

from app.home import pages

router = APIRouter()


router.include_router(pages.router)
