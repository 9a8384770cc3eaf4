"""The cluster harness on a machine where `make cluster-up` never ran: the node's tools (iptables, ip, runc)
are not installed yet, and checking for a running node must say "none", not crash."""

from __future__ import annotations

from pathlib import Path

import pytest

from camerafleet_dev.cluster import network


@pytest.fixture
def no_node_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no iptables, no ip


def test_no_guard_is_in_place_without_iptables(no_node_tools: None) -> None:
    assert network.guard_in_place() is False


def test_a_needed_missing_command_is_named_with_the_fix(no_node_tools: None) -> None:
    with pytest.raises(network.NetworkError, match=r"`iptables` is not installed: `make cluster-up` installs"):
        network._run("iptables", "-L")
