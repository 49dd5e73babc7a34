"""response_editor.py for binary prepared statements in transaction mode: a client's
PREPARE_OK shows the proxy's statement id, and a PREPARE pipelined ahead of an EXECUTE is hidden
unless it fails (then its ERR is the client's one answer), in any chunks."""

from __future__ import annotations

import pytest

from tenantproxy.wire.mysql.codec import int_fixed
from tenantproxy.wire.mysql.framing import encode_packet
from tenantproxy.wire.mysql.response_editor import AFTER_FAILED_PREPARE, Hidden, ResponseEditor
from tests.unit.wire.test_response_tracker import (
    DEPRECATE_EOF_CAPS,
    EOF_CAPS,
    Chunker,
    byte_by_byte,
    cut_at,
    whole,
)

CHUNKERS = [whole, byte_by_byte, cut_at([1, 3, 4, 5, 8, 9, 12, 13, 14, 20, 33])]
PREPARE = b"\x16SELECT ?, ?"
EXECUTE = b"\x17\xff\xff\xff\xff\x00\x01\x00\x00\x00"
COLUMN = b"\x03def\x00\x00\x00\x01?\x00\x0c?\x00\x00\x00\x00\x00\x06\x80\x00\x00\x00\x00"


def prepare_ok(server_id: int, columns: int, params: int) -> bytes:
    return b"\x00" + int_fixed(server_id, 4) + int_fixed(columns, 2) + int_fixed(params, 2)


def response(payloads: list[bytes]) -> bytes:
    return b"".join(encode_packet(payload, seq)[0] for seq, payload in enumerate(payloads, 1))


def prepare_answer(server_id: int, deprecate_eof: bool) -> bytes:
    eof = [] if deprecate_eof else [b"\xfe\x00\x00\x02\x00"]
    head = prepare_ok(server_id, 1, 2) + b"\x00\x00\x00"
    return response([head, COLUMN, COLUMN, *eof, COLUMN, *eof])


ERR = response([b"\xff" + int_fixed(1146, 2) + b"#42S02Table 't' doesn't exist"])
UNKNOWN = response([b"\xff" + int_fixed(1243, 2) + b"#HY000Unknown prepared statement handler"])
OK = response([b"\x00\x00\x00\x02\x00\x00\x00"])


def feed(editor: ResponseEditor, data: bytes, chunker: Chunker) -> tuple[bytes, list, list]:
    out, ends, reasons = [], [], []
    for chunk in chunker(data):
        out.append(editor.server_data(chunk))
        ends += editor.ends
        reasons += editor.hidden_reasons if any(end.is_hidden for end in editor.ends) else []
    return b"".join(out), ends, reasons


@pytest.mark.parametrize("deprecate_eof", [False, True])
@pytest.mark.parametrize("chunker", CHUNKERS, ids=["whole", "bytes", "cuts"])
def test_a_client_prepare_ok_shows_the_proxy_id_behind_other_responses(
    chunker: Chunker, deprecate_eof: bool
) -> None:
    caps = DEPRECATE_EOF_CAPS if deprecate_eof else EOF_CAPS
    editor = ResponseEditor(caps, is_client_tracking=True)
    editor.command_sent(b"\x03SET x", hidden=True)
    editor.command_sent(b"\x03SELECT 1")
    editor.command_sent(PREPARE, statement_id=7)
    editor.command_sent(PREPARE, statement_id=8)
    first, second = prepare_answer(0x01020304, deprecate_eof), prepare_answer(99, deprecate_eof)
    out, ends, _ = feed(editor, OK + OK + first + ERR, chunker)
    rewritten = first[:5] + int_fixed(7, 4) + first[9:]
    assert out == OK + rewritten + ERR
    assert [end.statement_id for end in ends] == [None, None, 0x01020304, None]
    assert list(editor.prepare_oks) == [prepare_ok(0x01020304, 1, 2)]
    assert editor.tracker.is_idle
    editor.command_sent(PREPARE, statement_id=9)
    out, _, _ = feed(editor, second, chunker)
    assert out == second[:5] + int_fixed(9, 4) + second[9:]
    assert editor.prepare_oks[-1] == prepare_ok(99, 1, 2)


@pytest.mark.parametrize("chunker", CHUNKERS, ids=["whole", "bytes", "cuts"])
def test_a_pipelined_prepare_is_hidden_and_its_execute_shown(chunker: Chunker) -> None:
    editor = ResponseEditor(EOF_CAPS, is_client_tracking=True)
    lazy = Hidden("statement 3", shows_error=True)
    editor.command_sent(PREPARE, hidden=lazy)
    editor.command_sent(EXECUTE)
    out, ends, reasons = feed(editor, prepare_answer(5, False) + OK, chunker)
    assert out == OK
    assert [end.is_hidden for end in ends] == [True, False]
    assert ends[0].statement_id == 5 and reasons == [lazy]


@pytest.mark.parametrize("chunker", CHUNKERS, ids=["whole", "bytes", "cuts"])
def test_a_failed_pipelined_prepare_is_the_one_error_the_client_gets(chunker: Chunker) -> None:
    editor = ResponseEditor(EOF_CAPS, is_client_tracking=False)
    editor.command_sent(PREPARE, hidden=Hidden("statement 3", shows_error=True))
    editor.command_sent(EXECUTE)
    editor.command_sent(b"\x03SELECT 1")
    out, ends, reasons = feed(editor, ERR + UNKNOWN + OK, chunker)
    assert out == ERR + OK
    assert [(end.is_hidden, end.error_code) for end in ends] == [
        (False, 1146),
        (True, 1243),
        (False, None),
    ]
    assert reasons == [AFTER_FAILED_PREPARE]
    assert editor.tracker.is_idle
