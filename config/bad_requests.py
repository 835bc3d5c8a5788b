"""aiohttp logs every request it cannot parse (and answers 400) at ERROR, with a traceback:
anyone who can reach the webhook or the model gateway could fill the log that way. Such a
record becomes one DEBUG line (shown only when debugging), without its traceback."""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError

SERVER_LOGGER = "aiohttp.server"


class QuietBadRequests(logging.Filter):
    """Turns aiohttp's log of a malformed request into one DEBUG line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError):
            return True
        reason = str(error.message).strip().splitlines()[0] if error.message else ""
        record.msg, record.args = "%s: %s %s", (record.getMessage(), error.code, reason)
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(SERVER_LOGGER).isEnabledFor(logging.DEBUG)


def quiet_bad_requests() -> None:
    """Install the filter on aiohttp's server logger (once, however often called)."""
    logger = logging.getLogger(SERVER_LOGGER)
    if not any(isinstance(f, QuietBadRequests) for f in logger.filters):
        logger.addFilter(QuietBadRequests())
