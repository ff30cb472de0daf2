"""Logs: one JSON object a line (or an aligned line for a person at a terminal) for every record of the
``crm_api`` loggers, including the line each request writes (``crm_api.access``), and for uvicorn's.

What a record may carry: the message, the logger, the request id of the request it was written in, and a
request line's fields (ids, method, route template, status, duration). Never a path with its values, a query
string, a header or a body: those hold keys and personal data.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from typing import Any

from . import jsonutil
from .config import Settings

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("crm_request_id", default=None)
"""The request being served (set by the request middleware), added to every record written meanwhile."""

access = logging.getLogger("crm_api.access")

_OURS = "_crm_api_handler"


_second: tuple[int, str] = (0, "")


def _time(record: logging.LogRecord) -> str:
    """RFC 3339 UTC with milliseconds; the second's text is made once per second (datetime's formatting was
    half the cost of a request's log line)."""
    global _second
    whole = int(record.created)
    if _second[0] != whole:
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{_second[1]}.{int((record.created - whole) * 1000):03d}Z"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = getattr(record, "fields", None) or {}
    request_id = REQUEST_ID.get()
    if request_id is not None and "request_id" not in fields:
        return {"request_id": request_id, **fields}
    return fields


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ...fields, "exception"}``, one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return jsonutil.dumps_str(line)


class TextFormatter(logging.Formatter):
    """``time level logger message key=value ...``, the exception below."""

    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = f"{_time(record)} {record.levelname:<7} {record.name:<20} {record.getMessage()}"
        line = f"{line}  {extra}" if extra else line
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def formatter_class(settings: Settings) -> type[logging.Formatter]:
    text = settings.log_format == "text" or (settings.log_format == "auto" and sys.stderr.isatty())
    return TextFormatter if text else JsonFormatter


def configure(settings: Settings) -> None:
    """Give the ``crm_api`` loggers one handler on stderr (replacing ours from an earlier call), at
    ``settings.log_level``. Uvicorn's loggers get the same through ``uvicorn_config``."""
    logger = logging.getLogger("crm_api")
    for handler in list(logger.handlers):
        if getattr(handler, _OURS, False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter_class(settings)())
    setattr(handler, _OURS, True)
    logger.addHandler(handler)
    logger.setLevel(settings.log_level.upper())
    logger.propagate = False  # a root handler (an embedding app's) would write each record twice
    # what no format of ours shows, and each record would otherwise look up
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False


def uvicorn_config(settings: Settings) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for ``uvicorn.run(log_config=...)``: its records in our format, in
    every worker process it starts."""
    cls = formatter_class(settings)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"crm": {"()": f"{cls.__module__}.{cls.__qualname__}"}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "crm", "stream": "ext://sys.stderr"}
        },
        "loggers": {
            name: {"handlers": ["stderr"], "level": settings.log_level.upper(), "propagate": False}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }
