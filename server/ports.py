"""Whether the hub can listen where its settings say, told in the settings' words.

gunicorn retries a taken address for five seconds and then prints "Can't
connect to ('127.0.0.1', 8000)", which names neither the setting nor what to
do.  The master checks the address once before it binds (``on_starting`` in
``server/gunicorn_conf.py``), with the same ``SO_REUSEADDR`` gunicorn uses, so
a socket in ``TIME_WAIT`` from the previous run is not taken for a rival.
"""

from __future__ import annotations

import errno
import socket


def bind_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on, naming ``HUB_HOST``/``HUB_PORT``; None if it can."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        return f"HUB_HOST={host!r} is not an address of this machine ({exc.strerror})"
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return _explain(exc, host, port, where)
    return None


def _explain(exc: OSError, host: str, port: int, where: str) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"HUB_PORT={port}: {where} is already in use (another hub, or another program): "
            "stop it, or set HUB_PORT to a free port"
        )
    if exc.errno == errno.EACCES:
        return (
            f"HUB_PORT={port}: listening on {where} needs privileges this user lacks: set "
            "HUB_PORT above 1023 (nginx can listen on the low port, docs/OPERATIONS.md)"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return (
            f"HUB_HOST={host!r} is no address of this machine: set HUB_HOST to one of its "
            "addresses, 127.0.0.1 or 0.0.0.0"
        )
    return f"HUB_HOST={host!r}, HUB_PORT={port}: cannot listen on {where}: {exc.strerror}"
