"""Where tensors live and in which precision they compute: `device: auto` and `bf16: auto`.

- `resolve_device("auto")` is `cuda:LOCAL_RANK` under torchrun, `cuda` when a GPU is visible, else
  `cpu`. Every module that builds tensors asks the model for its device; nothing assumes the CPU.
- `resolve_compute(device, bf16)` is the one entry point: the device and its `Precision`.
- `resolve_precision(setting, device)` is its rule for bf16 autocast. `auto` means bf16 only where the device
  runs it natively — a CUDA GPU of compute capability >= 8.0 (Ampere on), a CPU that reports AVX512_BF16
  or AMX, or a CPU whose one-off calibration matmul shows bf16 no slower than float32 — and float32
  elsewhere: on an AVX2-only CPU bf16 is emulated and ~50x slower than float32. `true` forces bf16
  with one warning that quotes the measured slowdown. The calibration (harness.calibration) is cached
  per machine (CPU model, torch version) in the machine cache, so it runs once.

Master weights are always float32; bf16 only ever enters through autocast (harness.model, the
training loop), so AdamW's small updates are not rounded away.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from harness.errors import HarnessError

if TYPE_CHECKING:
    import torch

DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?|mps)$"
BF16Setting = bool | Literal["auto"]
PrecisionName = Literal["bf16", "fp32"]
# CPU flags (Linux /proc/cpuinfo) that mean bf16 matmuls run in hardware.
NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# Tests and CI only: make this process see another CPU (a submit node unlike its jobs, a CI machine
# with native bf16). Values: torch capability names; AVX512_BF16 and AMX mean native bf16.
SIMULATED_CPU_ENV = "HARNESS_SIMULATE_CPU"
SIMULATED_NATIVE_BF16 = ("AVX512_BF16", "AMX")


def local_rank() -> int | None:
    """This process's GPU index under torchrun (LOCAL_RANK), None outside it."""
    value = os.environ.get("LOCAL_RANK")
    return int(value) if value is not None and value.isdigit() else None


def resolve_device(spec: str = "auto") -> torch.device:
    """`auto` -> `cuda:LOCAL_RANK` under torchrun, `cuda` when available, else `cpu`; others as given."""
    import torch

    if not re.match(DEVICE_PATTERN, spec):
        raise HarnessError(f"device {spec!r}: allowed values are auto, cpu, cuda, cuda:N, mps")
    if spec == "auto":
        if torch.cuda.is_available():
            rank = local_rank()
            return torch.device("cuda", rank) if rank is not None else torch.device("cuda")
        return torch.device("cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise HarnessError(f"device {spec!r}: this torch build or machine has no CUDA GPU; use auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise HarnessError(f"device {spec!r}: MPS is not available here; use auto or cpu")
    return device


def encode_devices(spec: str = "auto") -> list[torch.device]:
    """Devices an evaluation job encodes on: every visible GPU when `auto` finds several (and this
    process is not one rank of a torchrun group), else the one resolved device."""
    import torch

    device = resolve_device(spec)
    if spec == "auto" and device.type == "cuda" and local_rank() is None and torch.cuda.device_count() > 1:
        return [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
    return [device]


def process_group_backend(device: torch.device) -> str:
    """NCCL only moves CUDA tensors; everything else goes through gloo."""
    return "nccl" if device.type == "cuda" else "gloo"


# ----------------------------------------------------------------------------- precision


@dataclass(frozen=True)
class Precision:
    """The precision a stage computes in, and why."""

    bf16: bool
    reason: str

    @property
    def name(self) -> PrecisionName:
        return "bf16" if self.bf16 else "fp32"


def simulated_cpu() -> str | None:
    """The CPU capability a test or CI pass asks this process to pretend to have, if any."""
    value = os.environ.get(SIMULATED_CPU_ENV, "").strip().upper()
    return value or None


def cpu_capability() -> str:
    """torch's view of the CPU's vector ISA (AVX2, AVX512, ...): timings mean little without it."""
    simulated = simulated_cpu()
    if simulated is not None:
        return f"{simulated} (simulated)"
    import torch

    return str(torch.backends.cpu.get_cpu_capability())


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_bf16_native() -> tuple[bool, str]:
    """Does this CPU run bf16 matmuls natively? A simulated CPU, flags, then the cached calibration."""
    simulated = simulated_cpu()
    if simulated is not None:
        native = simulated in SIMULATED_NATIVE_BF16
        return native, f"simulated CPU {simulated} ({SIMULATED_CPU_ENV}): bf16 {'native' if native else 'emulated'}"
    flags = cpu_flags() & set(NATIVE_BF16_CPU_FLAGS)
    if flags:
        return True, f"CPU has {', '.join(sorted(flags))}"
    from harness.calibration import cpu_bf16_calibration

    calibration = cpu_bf16_calibration(cpu_model(), cpu_capability())
    slowdown = float(calibration["bf16_slowdown"])
    if slowdown <= 1.0:
        return True, f"calibration: bf16 matmul {1 / slowdown:.1f}x the float32 speed on this CPU"
    return False, (f"bf16 is emulated on this CPU ({calibration['capability']}): calibration matmul "
                   f"{slowdown:.1f}x slower than float32")


def cuda_bf16_native(index: int) -> tuple[bool, str]:
    """Native bf16 on CUDA GPU `index`: compute capability >= 8.0 (Ampere and later).

    `torch.cuda.is_bf16_supported()` alone is not the answer: by default it counts emulation (True on
    a V100 or T4, where bf16 runs far slower than float32) and it asks about the current device, not
    `index`. Its `including_emulation=False` answer is a cross-check; when the two disagree we trust
    the capability and say so.
    """
    import torch

    name = torch.cuda.get_device_name(index)
    major, minor = torch.cuda.get_device_capability(index)
    native = major >= 8
    torch_says = torch.cuda.is_bf16_supported(including_emulation=False)
    note = "" if torch_says == native else (
        f"; torch.cuda.is_bf16_supported(including_emulation=False) says {torch_says} for the current device")
    if native:
        return True, f"{name} (compute capability {major}.{minor}) runs bf16 natively{note}"
    return False, f"{name} (compute capability {major}.{minor} < 8.0) has no native bf16 (pre-Ampere GPU){note}"


def device_bf16_native(device: torch.device) -> tuple[bool, str]:
    import torch

    if device.type == "cuda":
        return cuda_bf16_native(device.index if device.index is not None else torch.cuda.current_device())
    if device.type == "cpu":
        return cpu_bf16_native()
    return False, f"bf16 is not enabled automatically on {device.type}"


def resolve_precision(setting: BF16Setting, device: torch.device) -> Precision:
    """`auto`: bf16 where native; `True`: bf16 (warns once if emulated); `False`: float32."""
    if setting is False:
        return Precision(False, "bf16: false")
    native, why = device_bf16_native(device)
    if setting == "auto":
        return Precision(native, f"bf16: auto -> {'bf16' if native else 'float32'} ({why})")
    if not native:
        _warn_forced_bf16(device.type, why)
    return Precision(True, f"bf16: true (forced; {why})" if not native else f"bf16: true ({why})")


@dataclass(frozen=True)
class Compute:
    """Where a stage computes and in which precision: the one answer to `device:` + `bf16:`."""

    device: torch.device
    precision: Precision

    @property
    def bf16(self) -> bool:
        return self.precision.bf16

    def describe(self) -> str:
        return describe(self.device, self.precision)


def resolve_compute(device: str | torch.device = "auto", bf16: BF16Setting = "auto") -> Compute:
    """The device (`auto`: see resolve_device; a torch.device is taken as is) and the precision
    `bf16` resolves to on it. Every stage, command and benchmark asks this function, so a setting
    resolves the same way everywhere on one machine."""
    import torch

    where = device if isinstance(device, torch.device) else resolve_device(device)
    return Compute(where, resolve_precision(bf16, where))


@functools.lru_cache(maxsize=None)
def _warn_forced_bf16(device_type: str, why: str) -> None:
    warnings.warn(f"bf16 forced on {device_type} although {why}; set bf16: auto (or false) to compute in "
                  "float32 here", RuntimeWarning, stacklevel=3)


def autocast(device: torch.device, bf16: bool) -> Any:
    """bf16 autocast on `device`'s type when asked, a no-op context otherwise."""
    import contextlib

    import torch

    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def describe(device: torch.device, precision: Precision) -> str:
    """One line for logs and banners: device, precision and (on CPU) the vector ISA."""
    where = str(device)
    if device.type == "cpu":
        where += f" ({cpu_capability()}, {cpu_model()})"
    return f"device {where}; precision {precision.name} — {precision.reason}"
