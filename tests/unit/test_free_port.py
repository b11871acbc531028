"""free_port() must not hand out a port from the kernel's ephemeral range.

A port from bind(0) comes from the range the kernel also gives outgoing connections their local port from: between
free_port() and the server's own bind, any client connection of the suite (gRPC to the emulators, HTTP to the
sandbox) can take it. A clean-clone CI run lost both dead-letter scenarios to that: PostgreSQL's "could not bind
IPv4 address 127.0.0.1: Address already in use" on a port free_port() had just returned."""
from __future__ import annotations

import socket

from local.processes import ephemeral_port_range, free_port


def test_free_ports_are_outside_the_ephemeral_range_and_bindable():
    low, high = ephemeral_port_range()
    ports = [free_port() for _ in range(200)]
    assert all(not low <= p <= high for p in ports), [p for p in ports if low <= p <= high][:5]
    assert len(set(ports)) > 150  # spread over the range, not one port handed out again and again
    for port in ports[:20]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))
