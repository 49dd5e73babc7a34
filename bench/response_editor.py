"""CPU per point-select response: ResponseTracker alone vs ResponseEditor, in one run.

A point select's response as MariaDB 10.11 sends it with CLIENT_DEPRECATE_EOF (column count, two
column definitions, one row, the 0xFE OK terminator), fed in one chunk per response, the command
queued first, as the relay does. Variants:

- tracker:            ResponseTracker.command_sent + server_data (today's relay);
- editor, tracking:   ResponseEditor for a client with CLIENT_SESSION_TRACK (nothing to edit);
- editor, untracked:  a client without it, the terminator without SERVER_SESSION_STATE_CHANGED;
- editor, rewrite:    a client without it, the terminator with session-state info (rewritten);
- editor, replay:     a hidden `SET SESSION` OK with state info before the response, same chunk.

Prints µs per response (best of R rounds of N responses); measures, asserts nothing.

    .venv/bin/python bench/response_editor.py [--rounds 5] [--responses 100000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from tenantproxy.wire.mysql.codec import int_fixed, str_lenenc
from tenantproxy.wire.mysql.constants import CapabilityFlags
from tenantproxy.wire.mysql.framing import encode_packet
from tenantproxy.wire.mysql.response_editor import ResponseEditor
from tenantproxy.wire.mysql.response_tracker import ResponseTracker

CAPS = (
    CapabilityFlags.CLIENT_PROTOCOL_41
    | CapabilityFlags.CLIENT_DEPRECATE_EOF
    | CapabilityFlags.CLIENT_MULTI_RESULTS
    | CapabilityFlags.CLIENT_SESSION_TRACK
)
COMMAND = b"\x03SELECT * FROM mytable WHERE ID = 17"
COLUMN = b"\x03def\x0euser_database1\x07mytable\x07mytable\x02id\x02id\x0c?\x00\x0b\x00\x00\x00\x03"


def response(terminator_status: int, state: bytes = b"") -> bytes:
    terminator = b"\xfe\x00\x00" + int_fixed(terminator_status, 2) + b"\x00\x00"
    if state:
        terminator += str_lenenc(b"") + str_lenenc(state)
    payloads = [b"\x02", COLUMN + b"\x00\x00", COLUMN + b"\x00\x00", b"\x0217\x05hello", terminator]
    return b"".join(encode_packet(p, i + 1)[0] for i, p in enumerate(payloads))


STATE_INFO = b"\x00" + str_lenenc(str_lenenc(b"time_zone") + str_lenenc(b"+01:00"))
PLAIN = response(0x0002)
CHANGED = response(0x4002, STATE_INFO)
REPLAY_OK = encode_packet(
    b"\x00\x00\x00\x02\x40\x00\x00" + str_lenenc(b"") + str_lenenc(STATE_INFO), 1
)[0]


def per_response(run: Callable[[int], None], rounds: int, count: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        run(count)
        best = min(best, time.perf_counter() - start)
    return best / count * 1e6


def tracker_only(count: int) -> None:
    tracker = ResponseTracker(CAPS)
    for _ in range(count):
        tracker.command_sent(COMMAND)
        tracker.server_data(PLAIN)


def editor(is_client_tracking: bool, data: bytes, replay: bool = False) -> Callable[[int], None]:
    def run(count: int) -> None:
        edit = ResponseEditor(CAPS, is_client_tracking=is_client_tracking)
        chunk = REPLAY_OK + data if replay else data
        for _ in range(count):
            if replay:
                edit.command_sent(b"\x03SET SESSION time_zone = '+01:00'", hidden=True)
            edit.command_sent(COMMAND)
            edit.server_data(chunk)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--responses", type=int, default=100_000)
    args = parser.parse_args()
    variants = {
        "tracker": tracker_only,
        "editor, tracking": editor(True, PLAIN),
        "editor, untracked": editor(False, PLAIN),
        "editor, rewrite": editor(False, CHANGED),
        "editor, replay": editor(True, PLAIN, replay=True),
    }
    base = None
    for name, run in variants.items():
        micros = per_response(run, args.rounds, args.responses)
        base = base or micros
        print(f"{name:20} {micros:6.2f} µs/response  ({micros / base:4.2f}x tracker)")


if __name__ == "__main__":
    main()
