"""A stand-in accelerator on the CPU: what a GPU run would get wrong, found without a GPU.

Under :func:`stand_in`, a tensor moved to :data:`DEVICE` reports that device but keeps real CPU
values, so the real ddgan code trains, checkpoints and resumes on it as on a GPU, with the three
checks a GPU makes that a CPU does not:

- an op that mixes a device tensor with a CPU tensor raises, as CUDA does (a 0-d CPU scalar is
  allowed, as CUDA kernels take it; an index on the CPU is an upload, as CUDA copies it over);
- every host read of a device value (``item()``, ``tolist()``, ``float()``, ``.cpu()``, and the
  size of a boolean-mask index or ``nonzero``) and every blocking host-to-device copy is recorded
  with the step and the ddgan line that made it: on a GPU each one waits for the queue of kernels
  to drain. Non-blocking copies are not syncs;
- :func:`checked_collectives` wraps torch.distributed's calls: every tensor handed to a collective
  must be on the communicating device, contiguous and of a dtype NCCL carries (:class:`OffDevice`
  otherwise). Stand-in tensors then travel through the real gloo group as their CPU values.

:func:`checked_collectives` takes a real CUDA device as well. The stand-in is ``meta``: no tensor of
ddgan's own is ever on it, and code that asks ``device.type == "cuda"`` (pinned memory, grouped
convolutions) takes its portable path.
"""
from __future__ import annotations

import functools
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.distributed as dist
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

DEVICE = torch.device("meta")
# What ProcessGroupNCCL maps to an NCCL type (bool travels as uint8); anything else it refuses.
NCCL_DTYPES = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int8, torch.uint8,
                         torch.int32, torch.int64, torch.bool})
_PACKAGE = str(Path(__file__).resolve().parents[1])
_aten = torch.ops.aten
_INDEXING = {_aten.index.Tensor, _aten.index_put_.default, _aten._index_put_impl_.default, _aten.index_put.default}
# Ops whose output size depends on the values: a GPU computes them, then the host reads the size.
_SIZED_BY_VALUES = {_aten.nonzero.default, _aten.masked_select.default, _aten._unique2.default,
                    _aten.unique_consecutive.default, _aten.unique_dim.default,
                    _aten.equal.default}     # and torch.equal, whose answer is a Python bool


class OffDevice(AssertionError):
    """A tensor handed to torch.distributed that NCCL would refuse (or a GPU would have to move)."""


@dataclass(frozen=True)
class Sync:
    """A host synchronisation: ``kind`` "read" (a device value read on the host) or "upload" (a
    blocking copy from the host), at ``step`` (the communicator's), made by ``where`` (file:line)."""

    step: int
    kind: str
    where: str


class OnDevice(torch.Tensor):
    """A CPU tensor (``elem``) that says it lives on :data:`DEVICE`."""

    @staticmethod
    def __new__(cls, elem: torch.Tensor):
        return torch.Tensor._make_wrapper_subclass(cls, elem.size(), strides=elem.stride(),
                                                   storage_offset=elem.storage_offset(), dtype=elem.dtype,
                                                   device=DEVICE, requires_grad=elem.requires_grad)

    def __init__(self, elem: torch.Tensor):
        self.elem = elem

    def __reduce_ex__(self, protocol):
        return self.elem.__reduce_ex__(protocol)     # torch.save writes the values, as from a GPU

    def __repr__(self) -> str:
        return f"OnDevice({self.elem!r})"

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        raise RuntimeError(f"{func} on a stand-in tensor outside ddgan.runtime.standin.stand_in()")


def _unwrap(x):
    return x.elem if isinstance(x, OnDevice) else x


def _wrap(x):
    return OnDevice(x) if isinstance(x, torch.Tensor) and not isinstance(x, OnDevice) else x


def _caller() -> str:
    """The innermost line of ddgan's own code (not this module) on the stack."""
    for frame in reversed(traceback.extract_stack()):
        if frame.filename.startswith(_PACKAGE) and not frame.filename.endswith("standin.py"):
            return f"{Path(frame.filename).relative_to(Path(_PACKAGE).parent)}:{frame.lineno}"
    return "?"


def _on(device) -> bool:
    return device is not None and torch.device(device).type == DEVICE.type


class _Device(TorchDispatchMode):
    def __init__(self, step: Callable[[], int]):
        super().__init__()
        self.step, self.syncs = step, []

    def _record(self, kind: str) -> None:
        self.syncs.append(Sync(self.step(), kind, _caller()))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        flat, _ = tree_flatten((args, kwargs))
        on_device = any(isinstance(a, OnDevice) for a in flat)
        if func is _aten._local_scalar_dense.default and on_device:
            self._record("read")
            return args[0].elem.item()
        if func is _aten._to_copy.default:
            return self._to_copy(args[0], kwargs)
        if on_device and (func in _SIZED_BY_VALUES or (func is _aten.index.Tensor and any(
                isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in args[1]))):
            self._record("read")
        if func is _aten.copy_.default and isinstance(args[0], OnDevice) != isinstance(args[1], OnDevice):
            dst, src = args[0], args[1]
            blocking = not kwargs.get("non_blocking", len(args) > 2 and args[2])
            if blocking and (src.dim() or not isinstance(dst, OnDevice)):
                self._record("upload" if isinstance(dst, OnDevice) else "read")
            _unwrap(dst).copy_(_unwrap(src))
            return dst
        for a in flat:
            if isinstance(a, torch.Tensor) and not isinstance(a, OnDevice) and a.device.type == DEVICE.type:
                raise RuntimeError(f"{func}: a bare {DEVICE.type} tensor, made where the stand-in cannot see, "
                                   f"holds no values (at {_caller()})")
        if on_device:
            for a in flat:
                if isinstance(a, torch.Tensor) and not isinstance(a, OnDevice) and a.dim():
                    if func not in _INDEXING:
                        raise RuntimeError(f"{func}: expected all tensors to be on {DEVICE.type} (the stand-in "
                                           f"device), found one on {a.device} (at {_caller()})")
                    self._record("upload")
        creates = _on(kwargs.get("device"))
        if creates:
            generator = kwargs.get("generator")
            if generator is not None and generator.device.type == "cpu":
                raise RuntimeError(f"{func}: a CPU generator cannot draw on the device (at {_caller()})")
            kwargs = dict(kwargs, device=torch.device("cpu"))
        out = func(*tree_map(_unwrap, args), **tree_map(_unwrap, kwargs))
        if not (on_device or creates):
            return out
        if func._schema.is_mutable and isinstance(out, torch.Tensor):     # in place: the same tensor back
            return next((a for a in flat if isinstance(a, OnDevice) and a.elem is out), _wrap(out))
        return tree_map(_wrap, out)

    def _to_copy(self, src: torch.Tensor, kwargs: dict):
        rest = {k: v for k, v in kwargs.items() if k != "device"}
        target = kwargs.get("device")
        if isinstance(src, OnDevice):
            if target is None or _on(target):
                return OnDevice(_aten._to_copy.default(src.elem, **rest))
            if not kwargs.get("non_blocking"):
                self._record("read")
            return _aten._to_copy.default(src.elem, **rest)
        if _on(target):
            if not kwargs.get("non_blocking"):
                self._record("upload")
            return OnDevice(_aten._to_copy.default(src, **rest))
        return _aten._to_copy.default(src, **kwargs)


def _index(items: list) -> torch.Tensor:
    """A list index as torch makes it: positions (long, also when empty) or a mask (bool)."""
    return torch.tensor(items, dtype=None if items and isinstance(items[0], bool) else torch.long)


class _Entries(TorchFunctionMode):
    """What skips the dispatcher: torch.tensor / torch.as_tensor straight onto the device go through
    a copy, which is what they cost on a GPU; ``tolist()`` and ``numpy()`` of a device tensor are reads."""

    def __init__(self, device: _Device):
        super().__init__()
        self.device = device

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.Tensor.tolist, torch.Tensor.numpy) and isinstance(args[0], OnDevice):
            self.device._record("read")
            return func(args[0].elem, *args[1:], **kwargs)
        if func in (torch.Tensor.__getitem__, torch.Tensor.__setitem__) and isinstance(args[0], OnDevice):
            # a list index becomes a tensor on the device inside C++ (an upload, on a GPU): make it here
            index = args[1]
            if isinstance(index, list) or (isinstance(index, tuple) and any(isinstance(i, list) for i in index)):
                index = tuple(_index(i) if isinstance(i, list) else i for i in
                              (index if isinstance(index, tuple) else (index,)))
                args = (args[0], index, *args[2:])
        if func in (torch.tensor, torch.as_tensor) and _on(kwargs.get("device")):
            out = func(*args, **{k: v for k, v in kwargs.items() if k not in ("device", "requires_grad")})
            return out.to(DEVICE).requires_grad_(kwargs.get("requires_grad", False))
        return func(*args, **kwargs)


@contextmanager
def stand_in(step: Callable[[], int] = lambda: 0) -> Iterator[list[Sync]]:
    """Run the body with :data:`DEVICE` standing in for a GPU; yields the list of host syncs it made
    (``step()`` says which step each belongs to)."""
    mode = _Device(step)
    with _Entries(mode), mode:
        yield mode.syncs


# ---------------------------------------------------------------------------------- collectives
# isend and irecv are checked inside batch_isend_irecv, where ddgan uses them (P2POp names them).
_CHECKED = ("broadcast", "all_reduce", "reduce", "gather", "scatter", "all_gather", "all_gather_into_tensor",
            "all_gather_single", "reduce_scatter_tensor", "send", "recv", "batch_isend_irecv")


def _check(name: str, t: torch.Tensor, device: torch.device) -> None:
    problem = (f"is on {t.device}, not {device}" if t.device != device else
               "is not contiguous" if not t.is_contiguous() else
               f"has dtype {t.dtype}, which NCCL does not carry" if t.dtype not in NCCL_DTYPES else None)
    if problem:
        raise OffDevice(f"a tensor handed to torch.distributed.{name} {problem} (at {_caller()})")


def _checked(name: str, real: Callable, device: torch.device) -> Callable:
    def plain(x):
        if isinstance(x, torch.Tensor):
            _check(name, x, device)
            return _unwrap(x)
        if isinstance(x, dist.P2POp):
            _check(name, x.tensor, device)
            op = object.__new__(dist.P2POp)     # the same transfer, carrying the values
            op.__dict__.update(vars(x), tensor=_unwrap(x.tensor))
            return op
        return x

    @functools.wraps(real)
    def call(*args, **kwargs):
        return real(*tree_map(plain, args, is_leaf=lambda x: isinstance(x, dist.P2POp)),
                    **tree_map(plain, kwargs, is_leaf=lambda x: isinstance(x, dist.P2POp)))
    return call


@contextmanager
def checked_collectives(device: torch.device | str) -> Iterator[None]:
    """Within the body, every torch.distributed call checks its tensors (:func:`_check`) against
    ``device`` and hands the backend the values (stand-in tensors as their CPU values)."""
    device, saved = torch.device(device), {}
    for name in _CHECKED:
        if hasattr(dist, name):
            saved[name] = getattr(dist, name)
            setattr(dist, name, _checked(name, saved[name], device))
    try:
        yield
    finally:
        for name, real in saved.items():
            setattr(dist, name, real)
