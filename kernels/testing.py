"""Helpers for running the Triton kernels under the interpreter on CPU (tests only)."""

import contextlib
import importlib
import os
import sys
from collections.abc import Iterator
from types import ModuleType


@contextlib.contextmanager
def triton_interpreter() -> Iterator[None]:
    """Set TRITON_INTERPRET=1 for the block, then restore it.

    triton reads the variable when a kernel is decorated and again while an interpreted kernel runs,
    so tests hold it around both, and other tests in the same process never see it.
    """
    old = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        yield
    finally:
        if old is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = old


def import_interpreted(name: str) -> ModuleType:
    """Import a kernel module with its kernels built for the interpreter (reloading it if needed)."""
    with triton_interpreter():
        module = sys.modules.get(name)
        if module is None:
            return importlib.import_module(name)
        if not getattr(module, "INTERPRETED", False):
            module = importlib.reload(module)
        return module
