"""HTTP API v1 for what users manage: feeds (with status, OPML) and subscriptions."""

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1")
