"""The one-time restart with glibc's malloc on huge pages."""

import os
import platform
import sys

import pytest

from p2p_jax import host

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")


def restart_calls(monkeypatch, tunables):
    calls = []
    if tunables is None:
        monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    else:
        monkeypatch.setenv("GLIBC_TUNABLES", tunables)
    monkeypatch.setattr(os, "execve", lambda *args: calls.append(args))
    host.restart_with_hugepage_malloc()
    return calls


def test_restarts_same_command_with_the_tunable(monkeypatch):
    monkeypatch.setattr(sys, "orig_argv", ["python3", "-m", "p2p_jax.main", "--workdir=W"])
    ((executable, argv, env),) = restart_calls(monkeypatch, None)
    assert executable == sys.executable
    assert argv == [sys.executable, "-m", "p2p_jax.main", "--workdir=W"]
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"


def test_keeps_other_tunables_and_restarts_only_once(monkeypatch):
    ((_, _, env),) = restart_calls(monkeypatch, "glibc.malloc.arena_max=2")
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    assert restart_calls(monkeypatch, env["GLIBC_TUNABLES"]) == []
    assert restart_calls(monkeypatch, "glibc.malloc.hugetlb=0") == []
