"""structlog set-up, called once from the CLI: JSON lines unless stderr is a terminal."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from worker.settings import LogFormat

# Fields every log line of this process carries, whichever thread writes it: structlog's
# contextvars stay in the thread that binds them, and the reloader, heartbeat, HTTP and
# kafka-python IO threads log too.
_process_fields: dict[str, Any] = {}


def bind_process_fields(**fields: Any) -> None:
    """Add fields (a worker's `worker_id`) to every later log line of this process."""
    _process_fields.update(fields)


def add_process_fields(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: the process fields, unless the event names its own."""
    for name, value in _process_fields.items():
        event_dict.setdefault(name, value)
    return event_dict


def configure_logging(log_format: LogFormat = "auto", level: str = "info") -> None:
    """Route structlog to stderr; quieten kafka-python, whose own logs are per-connection noise."""
    use_console = log_format == "console" or (log_format == "auto" and sys.stderr.isatty())
    renderers: list[structlog.typing.Processor] = (
        [structlog.dev.ConsoleRenderer()]
        if use_console
        else [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_process_fields,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *renderers,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
