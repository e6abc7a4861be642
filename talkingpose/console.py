"""Console text that no code page can break.

On Windows, Python writes a redirected stdout or stderr (a pipe, a log file, ComfyUI Desktop's log) in the
locale's code page, cp1252 on most Western machines, and stdout refuses by default what that page cannot hold:
one Greek letter in a file name would end the command with UnicodeEncodeError. ComfyUI wraps both streams in
strict ones of its own, so there even a log line is lost (logging prints its own traceback instead).

The pack's own text is plain ASCII or cp1252; what comes from outside (file names, messages of other libraries)
may hold anything. So the command line sets its streams to write what they cannot encode as a backslash escape
(`\\u03b2`), and the pack's log records are made encodable by the streams before any handler writes them. Files
and the UI's JSON keep every character (they are UTF-8).
"""
from __future__ import annotations

import logging
import sys


def make_streams_safe() -> None:
    """stdout and stderr write characters their encoding lacks as backslash escapes instead of failing (Python's
    stderr already does; stdout does not)."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and getattr(stream, "errors", "strict") == "strict":
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # a stream that is closed or cannot change: leave it
                pass


def encodable(text: str) -> str:
    """`text` with every character that stdout or stderr cannot encode written as a backslash escape."""
    for stream in (sys.stdout, sys.stderr):
        encoding = getattr(stream, "encoding", None) or "utf-8"
        try:
            text = text.encode(encoding, "backslashreplace").decode(encoding)
        except LookupError:  # an encoding Python does not know: keep to ASCII
            text = text.encode("ascii", "backslashreplace").decode("ascii")
    return text


class EncodableRecords(logging.Filter):
    """Rewrites a record's message (and its traceback text) so that the console streams can encode it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        safe = encodable(message)
        if safe != message:
            record.msg, record.args = safe, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = encodable(record.exc_text)
        return True


def make_log_lines_encodable(logger: logging.Logger) -> None:
    """Adds EncodableRecords to `logger` once (records logged to it directly; the pack logs to one logger)."""
    if not any(isinstance(f, EncodableRecords) for f in logger.filters):
        logger.addFilter(EncodableRecords())
