"""A simulated accelerator for device-placement tests on a CPU-only machine.

On a CPU-only machine every tensor is on the CPU, so a test cannot see that a batch, a target or a
mask was left behind on the host. This module simulates a second device: inside `SimulatedDevice()`,
moving a tensor to `"meta"` gives an `OnDevice` tensor that reports device `meta` but keeps its real
data on the CPU, so models train and encode with real numbers (`.item()`, data-dependent branches in
transformers and all). Every aten op that mixes a device tensor with a non-scalar host tensor — the
error CUDA raises as "Expected all tensors to be on the same device" — is recorded as a violation
and raised. Copies (`.to(device)`, `.cpu()`, `device_tensor.copy_(host)`) are the only legal
crossings, as on a real GPU.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

DEVICE = torch.device("meta")
# Ops that return Python values (host syncs): legal on a GPU, they return no tensor.
_HOST_RESULTS = {"_local_scalar_dense", "equal", "is_nonzero", "item"}


class PlacementError(AssertionError):
    """A device tensor met a host tensor in one op (CUDA would raise here too)."""


class OnDevice(torch.Tensor):
    """A tensor that says it lives on the simulated device; its data is a real CPU tensor."""

    host_data: torch.Tensor

    @staticmethod
    def __new__(cls, inner: torch.Tensor) -> OnDevice:
        return torch.Tensor._make_wrapper_subclass(  # type: ignore[attr-defined]
            cls, inner.size(), strides=inner.stride(), storage_offset=inner.storage_offset(), dtype=inner.dtype,
            device=DEVICE, requires_grad=inner.requires_grad)

    def __init__(self, inner: torch.Tensor) -> None:
        self.host_data = inner

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"OnDevice({self.host_data!r})"

    @classmethod
    def __torch_dispatch__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        raise PlacementError(f"{func} ran outside SimulatedDevice()")


def _is_device_target(kwargs: dict[str, Any]) -> bool:
    target = kwargs.get("device")
    return target is not None and torch.device(target).type == DEVICE.type


def _unwrap(x: Any) -> Any:
    return x.host_data if isinstance(x, OnDevice) else x


def _wrap(x: Any) -> Any:
    return OnDevice(x) if isinstance(x, torch.Tensor) and not isinstance(x, OnDevice) else x


class SimulatedDevice(TorchDispatchMode):
    """Run code with `DEVICE` as a separate device; collect (and raise) placement violations."""

    def __init__(self) -> None:
        super().__init__()
        self.violations: list[str] = []
        self.ops_on_device = 0

    def _violation(self, message: str) -> None:
        self.violations.append(message)
        raise PlacementError(message)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = dict(kwargs or {})
        name = func.overloadpacket.__name__
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        on_device = [t for t in tensors if isinstance(t, OnDevice)]
        to_device = _is_device_target(kwargs)

        if name in ("_to_copy", "to"):  # .to(...) / .cpu(): the only legal crossing
            source, rest = args[0], list(args[1:])
            # the target device comes as a keyword or, in `aten.to.device`, positionally
            positional = [i for i, a in enumerate(rest) if isinstance(a, torch.device)]
            target = rest[positional[0]] if positional else kwargs.get("device")
            if positional:
                rest[positional[0]] = torch.device("cpu")
            elif target is not None:
                kwargs["device"] = torch.device("cpu")
            result = func(_unwrap(source), *rest, **kwargs)
            if target is not None:
                return OnDevice(result) if torch.device(target).type == DEVICE.type else result
            return OnDevice(result) if isinstance(source, OnDevice) else result
        if name in ("lift_fresh", "lift_fresh_copy") and args[0].device.type == DEVICE.type \
                and not isinstance(args[0], OnDevice):
            # torch.tensor(data, device=...) builds a real meta tensor below the dispatcher: its data
            # is gone. Empty ones are harmless (transformers' KV-cache initialisation makes some).
            if args[0].numel() == 0:
                return OnDevice(torch.empty(args[0].shape, dtype=args[0].dtype))
            self._violation(f"{func}: torch.tensor(data, device=...) cannot be simulated; build on the host and "
                            "move it with .to(device)")
        if not on_device and not to_device:
            stray = [t for t in tensors if t.device.type == DEVICE.type]
            if stray:
                self._violation(f"{func}: a real {DEVICE.type} tensor (data lost) reached an op")
            return func(*args, **kwargs)

        host = [t for t in tensors if not isinstance(t, OnDevice) and t.dim() > 0]
        if host and name != "copy_":  # device.copy_(host) is a legal crossing too
            shapes = [tuple(t.shape) for t in host]
            self._violation(f"{func}: host tensor(s) of shape {shapes} meet tensors on the device")
        self.ops_on_device += 1
        if to_device:
            kwargs["device"] = torch.device("cpu")
        result = func(*tree_map(_unwrap, args), **tree_map(_unwrap, kwargs))
        if name in _HOST_RESULTS:
            return result
        return tree_map(_wrap, result)


def on_device(tensor: torch.Tensor) -> bool:
    return isinstance(tensor, OnDevice)
