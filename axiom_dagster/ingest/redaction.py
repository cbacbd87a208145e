"""No element values in logs, exception reasons or HTTP error details.

pydicom's messages quote raw values ("Invalid value for VR UI: '1.2.3^DOE'", b'...' reprs),
and exception texts may too. `redact` keeps the words, tags and numbers of sizes of a message
and replaces every quoted or bytes-literal part by <value>; `describe_exception` is the form
used in quarantine reasons. `install_log_redaction` routes pydicom's logger and Python
warnings through a filter that applies `redact` to each record.
"""
from __future__ import annotations

import logging
import re
import warnings

# b'...', b"...", '...', "..." (a quoted part ends at its own closing quote, greedy per line)
_QUOTED = re.compile(r"""b?'(?:[^'\\\n]|\\.)*'?|b?"(?:[^"\\\n]|\\.)*"?""")
# Text after a "value" marker such as `: ` in "Invalid value for VR UI: 1.2.x" (unquoted).
_AFTER_VALUE = re.compile(r"(?i)(\bvalue[s]?\b[^:\n]{0,40}:)\s*(?!<value>)[^\n]*")
REDACTED = "<value>"


def redact(text: object) -> str:
    """The message with quoted values and values after 'value ...:' replaced by <value>."""
    out = _QUOTED.sub(REDACTED, str(text))
    return _AFTER_VALUE.sub(lambda m: f"{m.group(1)} {REDACTED}", out)


def describe_exception(exc: BaseException, limit: int = 300) -> str:
    """`TypeName: message` with values redacted, for quarantine reasons and error details."""
    message = redact(exc)
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text[:limit]


class RedactingFilter(logging.Filter):
    """Rewrites a record's message with `redact` (arguments folded in first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info and record.exc_info[1] is not None:
            # Tracebacks quote values too: keep the exception's type and redacted text only.
            record.msg += f" ({describe_exception(record.exc_info[1])})"
            record.exc_info, record.exc_text = None, None
        return True


_FILTER = RedactingFilter()
# Loggers whose records may carry element values; their children (pynetdicom.acse, ...) too.
LOGGERS = ("pydicom", "py.warnings", "pynetdicom")
_installed = False


def install_log_redaction() -> None:
    """Route Python warnings into logging and redact every record of pydicom, pynetdicom and
    warnings, whichever handler (ours, Dagster's, uvicorn's) later formats it. Idempotent;
    called by every entry point (CLI, Dagster code location, realtime service)."""
    global _installed
    logging.captureWarnings(True)
    # pydicom logs every warning it raises on its own logger too (misc.warn_and_log): the
    # logged copy is redacted, the warning itself (shown raw by warnings.showwarning or
    # recorded by test runners) is dropped.
    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(name, *args, **kwargs):
        record = previous(name, *args, **kwargs)
        if name and name.startswith(LOGGERS):
            _FILTER.filter(record)
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
