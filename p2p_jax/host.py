"""Process settings that must be in place before JAX or TensorFlow load: the allocator,
native-library logging and the compilation cache. Entry points call `prepare_process()` first;
nothing here imports jax.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys

HUGEPAGE_TUNABLE = "glibc.malloc.hugetlb=1"
# The switch: P2P_JAX_HUGEPAGE_MALLOC=0 keeps the process as started.
HUGEPAGE_SWITCH = "P2P_JAX_HUGEPAGE_MALLOC"
# The switch: P2P_JAX_COMPILATION_CACHE=0 compiles every launch afresh.
CACHE_SWITCH = "P2P_JAX_COMPILATION_CACHE"
_ACCELERATOR_PLUGINS = ("libtpu", "jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin",
                        "jax_rocm7_plugin")


def runs_on_cpu() -> bool:
    """Whether JAX will run on the CPU, decided without importing it: JAX_PLATFORMS if set,
    else whether an accelerator plugin is installed."""
    platforms = os.environ.get("JAX_PLATFORMS", "").strip()
    if platforms:
        return platforms.split(",")[0].strip() == "cpu"
    return not any(importlib.util.find_spec(name) for name in _ACCELERATOR_PLUGINS)


def quiet_native_logs() -> None:
    """TensorFlow (imported by CLU's TensorBoard writer and the SavedModel export) prints
    CPU-feature and CUDA notices from C++ at start-up: keep its warnings and errors only. Its
    oneDNN notice is printed before it reads that level, so its oneDNN CPU kernels (which
    would run none of our math: that is XLA's) stay off unless the user turns them on."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def restart_with_hugepage_malloc() -> None:
    """Re-executes this process once with glibc's malloc on transparent huge pages.

    XLA on CPU allocates its step buffers afresh every call; on 4 KiB pages their first touch
    page-faults through hundreds of MB per step (~20% of a 256x256 train step on CPU). glibc
    reads its tunables only at start-up, hence the restart (same PID, same arguments), done
    before anything heavy is imported. A no-op off Linux/glibc, where GLIBC_TUNABLES already
    sets it, or with P2P_JAX_HUGEPAGE_MALLOC=0.
    """
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if (sys.platform != "linux" or platform.libc_ver()[0] != "glibc"
            or "glibc.malloc.hugetlb" in tunables or os.environ.get(HUGEPAGE_SWITCH) == "0"):
        return
    env = dict(os.environ, GLIBC_TUNABLES=":".join(filter(None, (tunables, HUGEPAGE_TUNABLE))))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def prepare_process() -> None:
    """What every entry point does first: quiet native logs and, on CPU, huge-page malloc
    (an allocator effect only XLA:CPU has; GPU/TPU runs start once)."""
    quiet_native_logs()
    if runs_on_cpu():
        restart_with_hugepage_malloc()


def use_compilation_cache() -> str | None:
    """Keeps compiled programs across launches in a user cache folder
    ($XDG_CACHE_HOME/p2p_jax/jax, default ~/.cache/p2p_jax/jax): a resume, an eval or a serve
    start of a model compiled before skips its compilation (the default step: ~20 s on CPU).
    A JAX_COMPILATION_CACHE_DIR already set is kept; P2P_JAX_COMPILATION_CACHE=0 turns it off.
    Returns the folder in use. The benchmarks leave it off: they time compilation."""
    if os.environ.get(CACHE_SWITCH) == "0":
        return None
    if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"),
                                                                ".cache")
        os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(root, "p2p_jax", "jax")
    return os.environ["JAX_COMPILATION_CACHE_DIR"]
