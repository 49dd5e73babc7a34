"""Errors of the wire layer.

ProtocolError          the peer sent bytes that break the protocol
└── PacketTooLarge     a packet is larger than the configured maximum
"""


class ProtocolError(Exception):
    """The peer broke the MySQL protocol; the connection cannot go on."""


class PacketTooLarge(ProtocolError):
    """A packet exceeds max_packet_bytes."""
