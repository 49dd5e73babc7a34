"""Every log line of the test process while installed, the proxy thread's included, and the ones
that must never appear: tracebacks, ERRORs, and the proxy's "unexpected" lines (a defect that a
client's bytes reached, see proxy/client_errors.py)."""

from __future__ import annotations

import logging
import threading


class LogRecorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self._records: list[logging.LogRecord] = []
        self._records_lock = threading.Lock()
        self._root_level = logging.WARNING

    def __enter__(self) -> LogRecorder:
        root = logging.getLogger()
        self._root_level = root.level
        root.setLevel(logging.INFO)
        root.addHandler(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        root = logging.getLogger()
        root.removeHandler(self)
        root.setLevel(self._root_level)

    def emit(self, record: logging.LogRecord) -> None:
        with self._records_lock:
            self._records.append(record)

    def messages(self) -> list[str]:
        with self._records_lock:
            return [record.getMessage() for record in self._records]

    def troubles(self) -> list[str]:
        """Lines with a traceback, at ERROR or above, or reporting an unexpected exception."""
        with self._records_lock:
            records = list(self._records)
        return [
            f"{record.levelname} {record.name}: {record.getMessage()}"
            for record in records
            if record.exc_info
            or record.levelno >= logging.ERROR
            or "unexpected" in record.getMessage()
        ]
