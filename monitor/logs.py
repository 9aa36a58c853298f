"""Structured logs: `message key=value …` for people, one JSON object per line for machines.

Every record is redacted (monitor.redact) before any handler sees it — message, extras,
exception text — whichever logger made it, Raqib's or a library's (urllib3 logs request paths
with webhook tokens at DEBUG). A filter on the root *logger* would not do: it never runs for
records propagated from child loggers, so the filter sits on the handler; the record factory
also redacts message and exception at creation, for handlers added later (e.g. pytest's
caplog) — extras are attached after the factory runs, so only the handler filter sees those.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from monitor.redact import redact_text

# uvicorn adds `color_message` (its message with ANSI colours) to its records: not an extra.
_STD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName", "color_message"}


def _extras(record: logging.LogRecord) -> dict:
    return {k: v for k, v in vars(record).items() if k not in _STD}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        d = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
             "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        d.update(_extras(record))
        if record.exc_info:
            d["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(d, ensure_ascii=False, default=str)


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        t = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%d %H:%M:%S")
        kv = " ".join(f"{k}={_kv(v)}" for k, v in _extras(record).items())
        line = f"{t} {record.levelname:<7} {record.getMessage()}" + (f" {kv}" if kv else "")
        if record.exc_info:
            line += "\n" + (record.exc_text or self.formatException(record.exc_info))
        return line


def _kv(v: object) -> str:
    s = str(v)
    return json.dumps(s, ensure_ascii=False) if (" " in s or not s) else s


class RedactingFilter(logging.Filter):
    """Rewrites a record in place so no URL secret survives in any part of it; never drops it."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Redact message, extras, exception and stack text (idempotent, never raises)."""
    try:
        message = record.getMessage()
    except Exception:  # a malformed call: let the handler report it as logging usually does
        return record
    record.msg, record.args = redact_text(message), ()
    for key, value in _extras(record).items():
        if isinstance(value, str):
            setattr(record, key, redact_text(value))
        elif not isinstance(value, int | float | bool | type(None)):
            text = str(value)
            clean = redact_text(text)
            if clean != text:
                setattr(record, key, clean)
    if record.exc_info and not record.exc_text:
        record.exc_text = RedactingFilter._formatter.formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact_text(record.exc_text)
    if record.stack_info:
        record.stack_info = redact_text(record.stack_info)
    return record


_FILTER = RedactingFilter()


def install_redaction() -> None:
    """Redact every record at creation (once per process), whatever handler it reaches."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, "_raqib_redacting", False):
        return

    def redacting_factory(*args, **kwargs) -> logging.LogRecord:
        return redact_record(factory(*args, **kwargs))

    redacting_factory._raqib_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(redacting_factory)


def setup_logging(level: str = "INFO", json_format: bool = False, stream=None) -> None:
    install_redaction()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json_format else KeyValueFormatter())
    handler.addFilter(_FILTER)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("apscheduler", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
