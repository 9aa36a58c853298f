"""HTTP API v1: search, articles, trends, topics, alerts/outbox, stream."""

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1")
