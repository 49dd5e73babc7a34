"""Listening ports for the stack's servers: free, distinct, and outside the ephemeral range."""

from __future__ import annotations

import socket
from pathlib import Path

from tenantproxy.stack.processes import free_ports


def test_free_ports_are_distinct_bindable_and_below_the_ephemeral_range():
    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = free_ports(50)
    assert len(set(ports)) == 50
    assert all(10_000 <= port < ephemeral_low for port in ports)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[0]))  # still free: nothing kept it
