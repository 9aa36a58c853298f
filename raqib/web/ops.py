"""Operations: /healthz (the process answers), /readyz (store and index answer), /metrics
(Prometheus text, from the service's plain counters in monitor.metrics and the store)."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from monitor import metrics
from raqib.web.auth import require_scope

log = logging.getLogger("raqib.web")
router = APIRouter(tags=["operations"])
READY_TIMEOUT = 5.0


@router.get("/healthz", summary="Liveness: the process answers (no token needed)")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: the store and the index answer (503 otherwise)",
            dependencies=[Depends(require_scope("read"))])
async def readyz(request: Request) -> JSONResponse:
    ctx = request.app.state.ctx
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(ctx.db(ctx.store.ping), READY_TIMEOUT)
        checks["store"] = "ok"
    except Exception as e:
        checks["store"] = f"error: {type(e).__name__}: {str(e)[:200]}"
    try:
        health = await asyncio.wait_for(ctx.index.health(), READY_TIMEOUT)
        checks["index"] = "ok" if health.get("status") in ("green", "yellow") else \
            f"error: {'; '.join(health.get('problems', [])) or health.get('status')}"[:300]
    except Exception as e:
        checks["index"] = f"error: {type(e).__name__}: {str(e)[:200]}"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ok else "not ready", "checks": checks,
                         "mode": "read side" if ctx.read_only else "service"},
                        status_code=200 if ok else 503)


class _Collector:
    """Reads the counters and the store at scrape time (nothing is kept twice)."""

    def __init__(self, store_figures: dict):
        self.figures = store_figures

    def collect(self):
        polls = CounterMetricFamily("raqib_polls", "Feed polls by outcome", labels=["status"])
        for k, v in sorted(metrics.counts(metrics.polls).items()):
            polls.add_metric([k], v)
        yield polls
        errors = CounterMetricFamily("raqib_poll_errors", "Failed feed polls by kind", labels=["kind"])
        for k, v in sorted(metrics.counts(metrics.poll_errors).items()):
            errors.add_metric([k], v)
        yield errors
        for name, counter, text in (("raqib_alerts_sent", metrics.alerts_sent, "Alert messages sent"),
                                    ("raqib_alert_failures", metrics.alert_failures, "Failed alert sends")):
            fam = CounterMetricFamily(name, text + " by channel", labels=["channel"])
            for k, v in sorted(metrics.counts(counter).items()):
                fam.add_metric([k], v)
            yield fam
        topics = GaugeMetricFamily("raqib_articles", "Stored articles per topic", labels=["topic"])
        for k, v in sorted(self.figures["topics"].items()):
            topics.add_metric([k], v)
        yield topics
        yield GaugeMetricFamily("raqib_articles_stored", "Stored articles", value=self.figures["stored"])
        backlog = GaugeMetricFamily("raqib_queue_backlog", "Articles waiting per queue", labels=["queue"])
        for k, v in sorted(self.figures["queues"].items()):
            backlog.add_metric([k], v)
        yield backlog
        outbox = GaugeMetricFamily("raqib_outbox", "Outbox rows by status", labels=["status"])
        for k, v in sorted(self.figures["outbox"].items()):
            outbox.add_metric([k], v)
        yield outbox
        for name, hist, text in (
                ("raqib_publish_to_fetch_seconds", metrics.publish_to_fetch,
                 "From an article's publication to its first fetch"),
                ("raqib_fetch_to_alert_seconds", metrics.fetch_to_alert,
                 "From fetching an article to its alert entering the outbox"),
                ("raqib_alert_queue_to_sent_seconds", metrics.queue_to_sent,
                 "From an alert entering the outbox to its being sent")):
            buckets, total, _ = hist.snapshot()
            yield HistogramMetricFamily(name, text, sum_value=total,
                                        buckets=[("+Inf" if b == float("inf") else repr(b), c) for b, c in buckets])


def _store_figures(store) -> dict:
    return {"topics": store.topic_counts(), "queues": store.queue_counts(),
            "outbox": store.outbox_backlog(), "stored": store.count()}


@router.get("/metrics", summary="Prometheus metrics", dependencies=[Depends(require_scope("read"))])
async def metrics_text(request: Request) -> Response:
    ctx = request.app.state.ctx
    registry = CollectorRegistry()
    registry.register(_Collector(await ctx.db(_store_figures, ctx.store)))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
