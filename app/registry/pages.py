"""HTML pages of this domain (researchers and admins)."""

from fastapi import APIRouter

router = APIRouter()
