"""A free TCP port on the loopback interface (torchrun's rendezvous on one machine)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nobody listens on right now (the OS picks it; it may be taken again before
    use, which is as good as any local rendezvous gets)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
