"""Start-up refuses an address it cannot listen on, naming the setting to change."""

from __future__ import annotations

import socket

from server.ports import bind_problem


def test_a_free_port_is_no_problem() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert bind_problem("127.0.0.1", port) is None


def test_a_taken_port_names_hub_port_and_the_address() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        problem = bind_problem("127.0.0.1", port)
    assert problem is not None
    assert problem.startswith(f"HUB_PORT={port}: 127.0.0.1:{port} is already in use")
    assert "set HUB_PORT to a free port" in problem


def test_an_address_of_another_machine_names_hub_host() -> None:
    problem = bind_problem("192.0.2.1", 8000)  # TEST-NET-1: never an address of this machine
    assert problem is not None
    assert problem.startswith("HUB_HOST='192.0.2.1' is no address of this machine")


def test_a_name_that_does_not_resolve_names_hub_host() -> None:
    problem = bind_problem("no-such-host.invalid", 8000)
    assert problem is not None
    assert problem.startswith("HUB_HOST='no-such-host.invalid' is not an address")
