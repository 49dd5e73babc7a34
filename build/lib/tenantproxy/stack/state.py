"""state.json: every process the stack started, written as each one starts.

``down`` stops exactly these (by PID, after checking the PID still runs our command), so a stack
whose ``up`` failed half-way, or whose instances died, can still be taken down.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from tenantproxy.errors import StackError
from tenantproxy.stack.processes import ProcessRecord

STATE_FILE = "state.json"
OUTPUTS_FILE = "outputs.json"


def write_private_file(path: Path, text: str) -> None:
    """Atomically writes ``text`` to ``path`` with mode 0600."""
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)


class StackState:
    """The processes of one stack, kept in ``<state_dir>/state.json``."""

    def __init__(self, state_dir: Path, processes: list[ProcessRecord], extra: dict[str, Any]):
        self.state_dir = state_dir
        self._processes = list(processes)
        self._extra = dict(extra)
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self.state_dir / STATE_FILE

    @property
    def processes(self) -> list[ProcessRecord]:
        with self._lock:
            return list(self._processes)

    @classmethod
    def create(cls, state_dir: Path, **extra: Any) -> StackState:
        state = cls(state_dir, [], extra)
        state._save()
        return state

    @classmethod
    def load(cls, state_dir: Path) -> StackState | None:
        path = state_dir / STATE_FILE
        try:
            data = json.loads(path.read_text())
            records = [ProcessRecord.from_dict(item) for item in data.pop("processes")]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StackError(f"{path}: unreadable stack state: {exc}") from None
        return cls(state_dir, records, data)

    def add(self, record: ProcessRecord) -> None:
        with self._lock:
            self._processes.append(record)
            self._save_locked()

    def _save(self) -> None:
        with self._lock:
            self._save_locked()

    def _save_locked(self) -> None:
        data = {**self._extra, "processes": [p.to_dict() for p in self._processes]}
        write_private_file(self.path, json.dumps(data, indent=2) + "\n")


def read_outputs(state_dir: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((state_dir / OUTPUTS_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StackError(f"{state_dir / OUTPUTS_FILE}: unreadable: {exc}") from None
    return data
