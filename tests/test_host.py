"""Process settings: the one-time restart onto huge-page malloc (CPU only, before heavy
imports), and quiet native logs."""

import os
import platform
import sys

import pytest

from p2p_jax import host

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")


def restart_calls(monkeypatch, tunables, platforms="cpu", switch=None):
    calls = []
    for name, value in (("GLIBC_TUNABLES", tunables), ("JAX_PLATFORMS", platforms),
                        (host.HUGEPAGE_SWITCH, switch)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    monkeypatch.setattr(os, "execve", lambda *args: calls.append(args))
    host.prepare_process()
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


def test_only_cpu_runs_restart_and_the_switch_turns_it_off(monkeypatch):
    assert restart_calls(monkeypatch, None, platforms="cuda") == []
    assert restart_calls(monkeypatch, None, platforms="tpu,cpu") == []
    assert restart_calls(monkeypatch, None, switch="0") == []
    assert len(restart_calls(monkeypatch, None, switch="1")) == 1


def test_native_logs_are_quiet_unless_the_user_says_otherwise(monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")
    host.quiet_native_logs()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "1"


def test_compiled_programs_are_kept_in_a_user_cache_folder_unless_turned_off(monkeypatch,
                                                                            tmp_path):
    for name in ("JAX_COMPILATION_CACHE_DIR", host.CACHE_SWITCH):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert host.use_compilation_cache() == str(tmp_path / "p2p_jax" / "jax")
    assert os.environ["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "p2p_jax" / "jax")
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/chosen")  # A folder set is kept.
    assert host.use_compilation_cache() == "/chosen"
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")
    monkeypatch.setenv(host.CACHE_SWITCH, "0")
    assert host.use_compilation_cache() is None
    assert "JAX_COMPILATION_CACHE_DIR" not in os.environ
