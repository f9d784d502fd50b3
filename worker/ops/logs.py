"""structlog set-up, called once from the CLI: JSON lines unless stderr is a terminal."""

from __future__ import annotations

import logging
import sys

import structlog

from worker.settings import LogFormat


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
