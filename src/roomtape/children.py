"""Child processes that do not outlive the server that started them, however it dies."""

from __future__ import annotations

import ctypes
import signal

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask the kernel to SIGTERM this process when its parent dies (Linux ``prctl``; elsewhere a no-op).

    For a child's start: a ``preexec_fn`` or a process pool's ``initializer``. A SIGKILLed server runs no
    clean-up, and uvicorn re-raises the SIGTERM it handled once it has shut down, so the parent's own exit
    path cannot be relied on to stop its children. The kernel watches the *thread* that started the child:
    start children from a thread that lives as long as the process (the event loop's).
    """
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the parent's normal exit still stops its children
        pass
