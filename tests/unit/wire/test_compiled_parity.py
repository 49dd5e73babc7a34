"""The Cython twins (wire/mysql/_compiled.py) against their pure-Python reference, event by event.

Both implementations get the same streams (the golden captures, one byte at a time, and
hypothesis-generated responses, pipelines and packet streams in random chunks) and every
observable result must be identical. The twins are built here when missing, never skipped.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenantproxy.wire.mysql import _compiled
from tenantproxy.wire.mysql.constants import CapabilityFlags
from tests.unit.wire.test_response_tracker import (
    BIG_GOLDEN,
    DEPRECATE_EOF_CAPS,
    EOF_CAPS,
    SMALL_GOLDEN,
    Transcript,
    byte_by_byte,
    cut_at,
    frame_all,
    load_golden,
    responses,
    whole,
)

ROOT = Path(__file__).resolve().parents[3]
Chunker = Callable[[bytes], list[bytes]]
Implementations = tuple[ModuleType, ModuleType]  # (pure, compiled)


def _twin(name: str) -> ModuleType:
    module_name = f"tenantproxy.wire.mysql._{name}_c"
    try:
        return importlib.import_module(module_name)
    except ImportError:
        subprocess.run([sys.executable, str(ROOT / "scripts" / "build_compiled.py")], check=True)
        importlib.invalidate_caches()
        return importlib.import_module(module_name)


@pytest.fixture(scope="module")
def trackers() -> Implementations:
    return _compiled.pure_module("response_tracker"), _twin("response_tracker")


@pytest.fixture(scope="module")
def framings() -> Implementations:
    return _compiled.pure_module("framing"), _twin("framing")


def _outcome(call: Callable[..., Any], *args: Any) -> Any:
    """A call's result, or its exception as (type name, message): both must match."""
    try:
        return call(*args)
    except Exception as error:
        return ("raised", type(error).__name__, str(error))


def tracker_events(
    module: ModuleType, capabilities: CapabilityFlags, transcript: Transcript, chunker: Chunker
) -> list[Any]:
    """Everything a tracker reports while fed ``transcript`` in ``chunker``'s pieces."""
    tracker = module.ResponseTracker(capabilities)
    tracker.end_offsets, tracker.ok_marks = [], []
    events: list[Any] = []
    for step in transcript.steps:
        if step.client is not None:
            client = step.client
            if tracker.is_awaiting_local_infile:
                events.append(_outcome(tracker.local_infile_packet_sent, len(client)))
            else:
                events.append(_outcome(tracker.command_sent, client[:16]))
            continue
        for chunk in chunker(step.server):
            events.append(_outcome(tracker.server_data, chunk))
            events.append(_tracker_state(tracker))
    events.append(_tracker_state(tracker))
    return events


def _tracker_state(tracker: Any) -> tuple[Any, ...]:
    return (
        [repr(end) for end in tracker.ends],
        list(tracker.end_offsets),
        [repr(mark) for mark in tracker.ok_marks],
        int(tracker.status_flags),
        tracker.last_error_code,
        tracker.has_session_state_changed,
        tracker.is_idle,
        tracker.is_awaiting_local_infile,
        tracker.pending_responses,
        bytes(tracker.partial_head),
    )


def _assert_same_tracker_events(
    trackers: Implementations, transcript: Transcript, chunker: Chunker
) -> None:
    pure, compiled = (
        tracker_events(module, transcript.capabilities, transcript, chunker) for module in trackers
    )
    assert compiled == pure


def test_the_twins_are_compiled_modules(
    trackers: Implementations, framings: Implementations
) -> None:
    for pure, compiled in (trackers, framings):
        assert compiled.__file__ is not None and compiled.__file__.endswith(".so")
        assert pure.__file__ is not None and pure.__file__.endswith(".py")
        assert compiled.COMPILED is False  # the twin's own copy never re-selects


@pytest.mark.parametrize("name", SMALL_GOLDEN)
@pytest.mark.parametrize("chunker", [whole, byte_by_byte], ids=["whole", "byte_by_byte"])
def test_golden_capture_gives_identical_tracker_events(
    trackers: Implementations, name: str, chunker: Chunker
) -> None:
    _assert_same_tracker_events(trackers, load_golden(name), chunker)


@pytest.mark.parametrize("name", BIG_GOLDEN)
def test_golden_big_row_gives_identical_tracker_events(
    trackers: Implementations, name: str
) -> None:
    transcript = load_golden(name)
    _assert_same_tracker_events(trackers, transcript, whole)
    _assert_same_tracker_events(trackers, transcript, cut_at(list(range(0, 1 << 25, 65_521))))


@pytest.mark.parametrize("capabilities", [EOF_CAPS, DEPRECATE_EOF_CAPS])
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_generated_pipelines_give_identical_tracker_events(
    trackers: Implementations, capabilities: CapabilityFlags, data: st.DataObject
) -> None:
    is_deprecate_eof = bool(capabilities & CapabilityFlags.CLIENT_DEPRECATE_EOF)
    pipelined = data.draw(st.lists(responses(is_deprecate_eof), min_size=1, max_size=4))
    stream = b"".join(response.wire for response in pipelined)
    # Sometimes garbage after the pipeline: both must raise the same error at the same call.
    stream += data.draw(st.sampled_from([b"", b"\x01\x00\x00\x01\x00", b"\xff"]))
    cuts = data.draw(st.lists(st.integers(1, len(stream)), max_size=20))
    chunks = cut_at(cuts)(stream)

    def feed(module: ModuleType) -> list[Any]:
        tracker = module.ResponseTracker(capabilities)
        tracker.end_offsets, tracker.ok_marks = [], []
        events = [_outcome(tracker.command_sent, r.command[:16]) for r in pipelined]
        for chunk in chunks:
            events.append(_outcome(tracker.server_data, chunk))
            events.append(_tracker_state(tracker))
        return events

    pure, compiled = trackers
    assert feed(compiled) == feed(pure)


def splitter_events(module: ModuleType, max_packet_bytes: int, chunks: list[bytes]) -> list[Any]:
    splitter = module.PacketSplitter(max_packet_bytes)
    events: list[Any] = []
    for chunk in chunks:
        fed = _outcome(splitter.feed, chunk)
        events.append([tuple(packet) for packet in fed] if isinstance(fed, list) else fed)
        events.append(splitter.buffered_bytes)
        if isinstance(fed, tuple):
            break
    events.append(splitter.take_buffered())
    return events


@settings(max_examples=200, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=300), max_size=8),
    tail=st.binary(max_size=6),
    cuts=st.lists(st.integers(1, 4000), max_size=20),
    max_packet_bytes=st.sampled_from([50, 1 << 24]),
)
def test_generated_packet_streams_give_identical_splitter_packets(
    framings: Implementations,
    payloads: list[bytes],
    tail: bytes,
    cuts: list[int],
    max_packet_bytes: int,
) -> None:
    stream = frame_all(payloads) + tail
    pure, compiled = framings
    for chunker in (whole, byte_by_byte, cut_at(cuts)):
        chunks = chunker(stream)
        assert splitter_events(compiled, max_packet_bytes, chunks) == splitter_events(
            pure, max_packet_bytes, chunks
        )


def test_a_max_size_fragment_and_its_continuation_split_identically(
    framings: Implementations,
) -> None:
    stream = frame_all([b"x" * 0xFFFFFF + b"tail"])
    pure, compiled = framings
    chunks = cut_at(list(range(0, len(stream), 1 << 20)))(stream)
    assert splitter_events(compiled, 1 << 25, chunks) == splitter_events(pure, 1 << 25, chunks)


def _chosen(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = (
        "from tenantproxy.wire.mysql import framing, response_tracker;"
        "print(response_tracker.COMPILED, framing.COMPILED,"
        " response_tracker.ResponseTracker.__module__, framing.PacketSplitter.__module__)"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TENANTPROXY_")}
    return subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, cwd=ROOT, capture_output=True, text=True
    )


def test_the_compiled_twins_are_chosen_by_default_and_pure_python_when_forced(
    trackers: Implementations,
) -> None:
    default = _chosen({}).stdout.split()
    assert default == [
        "True",
        "True",
        "tenantproxy.wire.mysql._response_tracker_c",
        "tenantproxy.wire.mysql._framing_c",
    ]
    forced = _chosen({"TENANTPROXY_PURE_PYTHON": "1"}).stdout.split()
    assert forced == [
        "False",
        "False",
        "tenantproxy.wire.mysql.response_tracker",
        "tenantproxy.wire.mysql.framing",
    ]
    assert _chosen({"TENANTPROXY_COMPILED": "1"}).stdout.split() == default
