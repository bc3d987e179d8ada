"""Checks that HDL's own per-step code never reads a device value back to the host.

HDL's per-step code (the pool lookup and target building, the seam's row replacement, the bank
update in ``hdl_embed: bank`` mode, the logged ``hdl/injected_rows`` / ``hdl/batch_share``, which
stay 0-dim tensors until USB's logging formats them) runs inside :func:`per_step`.  That is a
no-op unless a check is switched on around a run with :func:`checking`:

* :func:`no_host_sync` (``device``): ``torch.cuda.set_sync_debug_mode("error")`` on a CUDA device,
  so any synchronising call raises; a no-op on the CPU.  Used by ``scripts/gpu_check.py``.
* :func:`forbid_host_reads`: ``Tensor.item``, ``tolist``, ``numpy``, ``bool()``, ``int()``,
  ``float()`` and ``operator.index`` of a tensor raise :class:`HostSyncError`; the CPU stand-in
  for the CUDA check (``tests/test_host_sync.py``), since on the CPU nothing synchronises.

``hdl_use: pool`` is the one mode whose step syncs: the number of HDL-labeled rows that join the
labeled batch decides the batch's layout, so it is read on the host (outside :func:`per_step`).
USB's own step synchronises too (``loss.item()`` in its log dict); neither check covers it.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Callable, ContextManager, Iterator, Optional

import torch

_READS = ("item", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__")
_check: Optional[Callable[[], ContextManager]] = None


class HostSyncError(RuntimeError):
    """A tensor value was read on the host inside HDL's per-step code."""


@contextmanager
def no_host_sync(device) -> Iterator[None]:
    """``torch.cuda.set_sync_debug_mode("error")`` while inside, on a CUDA ``device``; else nothing."""
    if torch.device(device).type != "cuda":
        yield
        return
    before = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(before)


@contextmanager
def forbid_host_reads() -> Iterator[None]:
    """Reading a tensor's value on the host (``item``, ``tolist``, ``numpy``, ``bool``, ``int``,
    ``float``, ``operator.index``) raises :class:`HostSyncError` while inside."""
    saved = {name: torch.Tensor.__dict__.get(name) for name in _READS}

    def refuse(name):
        def read(self, *args, **kwargs):
            raise HostSyncError(f"Tensor.{name} called inside HDL's per-step code: it reads a device value "
                                f"back to the host (a synchronisation on CUDA)")
        return read

    for name in _READS:
        setattr(torch.Tensor, name, refuse(name))
    try:
        yield
    finally:
        for name, fn in saved.items():
            if fn is None:
                delattr(torch.Tensor, name)
            else:
                setattr(torch.Tensor, name, fn)


@contextmanager
def checking(check: Callable[[], ContextManager]) -> Iterator[None]:
    """Run :func:`per_step` blocks under ``check()`` (e.g. ``lambda: no_host_sync(device)`` or
    :func:`forbid_host_reads`) while inside."""
    global _check
    before, _check = _check, check
    try:
        yield
    finally:
        _check = before


def per_step() -> ContextManager:
    """The context HDL's own per-step code runs in: the active check, or nothing."""
    return _check() if _check is not None else nullcontext()
