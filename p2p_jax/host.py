"""Host process settings that must be in place before the runtime allocates anything."""

from __future__ import annotations

import os
import platform
import sys

from absl import logging

HUGEPAGE_TUNABLE = "glibc.malloc.hugetlb=1"


def restart_with_hugepage_malloc() -> None:
    """Re-executes this process once with glibc's malloc on transparent huge pages.

    XLA on CPU allocates its step buffers afresh every call; on 4 KiB pages their first touch
    page-faults through hundreds of MB per step (~20% of a 256x256 train step on CPU). glibc
    reads its tunables only at start-up, hence the restart (same PID, same arguments). A no-op
    off Linux/glibc or where GLIBC_TUNABLES already sets it; `config.hugepage_malloc=False`
    turns it off.
    """
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if (sys.platform != "linux" or platform.libc_ver()[0] != "glibc"
            or "glibc.malloc.hugetlb" in tunables):
        return
    logging.info("restarting with GLIBC_TUNABLES=%s", HUGEPAGE_TUNABLE)
    env = dict(os.environ, GLIBC_TUNABLES=":".join(filter(None, (tunables, HUGEPAGE_TUNABLE))))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
