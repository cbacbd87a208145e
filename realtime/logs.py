"""Structured JSON logs with a correlation id (per association, per HTTP request).

Never log patient data: log UIDs, AE titles, addresses, sizes, statuses; not names or IDs
from the data set. pynetdicom's own loggers are kept at WARNING because its DEBUG/INFO
output can summarise data sets.
"""
from __future__ import annotations

import contextvars
import json
import logging
import sys
import time

from axiom_dagster.ingest.redaction import install_log_redaction

correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("correlation_id", default=None)

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName", "color_message"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,  # several listener workers may share one log stream
        }
        cid = getattr(record, "correlation_id", None) or correlation_id.get()
        if cid:
            out["correlation_id"] = cid
        for key, value in record.__dict__.items():
            if key not in _RESERVED and key != "correlation_id" and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(level: str = "INFO", stream=None) -> None:
    install_log_redaction()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("pynetdicom", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # uvicorn installs its own handlers; route them through ours.
    for name in ("uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers = []
        lg.propagate = True
