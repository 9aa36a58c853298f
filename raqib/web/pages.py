"""Server-rendered pages (RTL-correct, Arabic and English, usable without JavaScript)."""

from fastapi import APIRouter

router = APIRouter()
