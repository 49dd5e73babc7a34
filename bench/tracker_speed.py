"""µs per point-select response for the response tracker and the packet splitter, pure vs compiled.

Run: .venv/bin/python bench/tracker_speed.py   (after make setup built the compiled twins)
One point select's response (column count, one column definition, one row, OK terminator with
CLIENT_DEPRECATE_EOF) fed whole, as the relay sees it; the splitter gets the COM_QUERY.
"""

from __future__ import annotations

import importlib
import time
import timeit

from tenantproxy.wire.mysql import _compiled
from tenantproxy.wire.mysql.constants import CapabilityFlags

CAPABILITIES = CapabilityFlags.CLIENT_PROTOCOL_41 | CapabilityFlags.CLIENT_DEPRECATE_EOF
COMMAND = b"\x03SELECT c FROM sbtest1 WHERE id=5042"
# catalog, schema, table, org_table, name, org_name, then the fixed fields (CHAR(120) c).
COLUMN_NAMES = b"\x03def\x06sbtest\x07sbtest1\x07sbtest1\x01c\x01c"
COLUMN = COLUMN_NAMES + b"\x0c\x08\x00\x78\x00\x00\x00\xfe\x01\x10\x00\x00\x00"
ROW = b"\x78" + b"83868641912-28773972837-60736120486-75162659906-27563526494-" * 2
OK_TERMINATOR = b"\xfe\x00\x00\x02\x00\x00\x00"
ROUNDS = 100_000
REPEATS = 7


def _best_us(call: object) -> float:
    """The best of REPEATS runs in CPU time (the machine is shared: wall time is not ours)."""
    runs = timeit.repeat(call, number=ROUNDS, repeat=REPEATS, timer=time.process_time)  # type: ignore[arg-type]
    return min(runs) / ROUNDS * 1e6


def _frame(payloads: list[bytes]) -> bytes:
    wire = b""
    for sequence_id, payload in enumerate(payloads, start=1):
        wire += len(payload).to_bytes(3, "little") + bytes([sequence_id]) + payload
    return wire


RESPONSE = _frame([b"\x01", COLUMN, ROW, OK_TERMINATOR])
QUERY = len(COMMAND).to_bytes(3, "little") + b"\x00" + COMMAND


def tracker_us(module: object) -> float:
    tracker = module.ResponseTracker(CAPABILITIES)  # type: ignore[attr-defined]

    def one_response() -> None:
        tracker.command_sent(COMMAND[:16])
        assert tracker.server_data(RESPONSE) == 1

    return _best_us(one_response)


def splitter_us(module: object) -> float:
    splitter = module.PacketSplitter(1 << 24)  # type: ignore[attr-defined]
    return _best_us(lambda: splitter.feed(QUERY))


def main() -> None:
    for name, measure in (("response_tracker", tracker_us), ("framing", splitter_us)):
        pure = measure(_compiled.pure_module(name))
        compiled = measure(importlib.import_module(f"tenantproxy.wire.mysql._{name}_c"))
        print(
            f"{name:17} pure {pure:6.3f} µs  compiled {compiled:6.3f} µs  "
            f"pure/compiled {pure / compiled:5.2f}x"
        )


if __name__ == "__main__":
    main()
