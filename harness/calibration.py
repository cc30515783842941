"""The CPU bf16 micro-benchmark behind `bf16: auto` on a CPU without bf16 flags: float32 vs bf16
matmul speed, measured once per machine and cached on disk in the machine cache.

The CPU's identity (model, vector ISA) is passed in by harness.devices, which detects it; this module
only measures and caches, so it sits below devices and imports nothing that knows about precision.
The measurement runs on one thread and restores torch's thread count before it returns.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

CALIBRATION_VERSION = 2
_CALIBRATION_SIZE = 256  # 33 MFLOP per matmul: ~3 ms in float32, ~0.2 s where bf16 is emulated
_CALIBRATION_ROUNDS = 3


def calibration_file(cpu: str, capability: str) -> Path:
    """Per machine (CPU model, vector ISA, torch version), shared by every cache folder on it."""
    import torch

    from harness.hashing import content_hash
    from harness.paths import machine_cache_root

    machine = content_hash({"cpu": cpu, "capability": capability, "torch": torch.__version__,
                            "v": CALIBRATION_VERSION})
    return machine_cache_root() / f"cpu-bf16-{machine}.json"


def time_matmuls(size: int, rounds: int) -> tuple[float, float]:
    """Best float32 and bf16 times of a size x size matmul, on one thread, interleaved.

    One thread: on a busy 2-core machine two-thread kernels stall on each other and the timing says
    more about the neighbours than the ISA. Interleaving: both dtypes see the same load. float32 gets
    more tries (it is cheap), so its best is close to the machine's real speed. torch's thread count
    is restored on the way out, error or not.
    """
    import torch

    generator = torch.Generator().manual_seed(0)
    a32 = torch.randn(size, size, generator=generator)
    b32 = torch.randn(size, size, generator=generator)
    a16, b16 = a32.to(torch.bfloat16), b32.to(torch.bfloat16)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    best = {torch.float32: float("inf"), torch.bfloat16: float("inf")}
    try:
        with torch.inference_mode():
            a32 @ b32, a16 @ b16  # warm-up: first calls pay for kernel selection
            for _ in range(rounds):
                for _ in range(3):
                    start = time.perf_counter()
                    a32 @ b32
                    best[torch.float32] = min(best[torch.float32], time.perf_counter() - start)
                start = time.perf_counter()
                a16 @ b16
                best[torch.bfloat16] = min(best[torch.bfloat16], time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return best[torch.float32], best[torch.bfloat16]


@functools.cache
def cpu_bf16_calibration(cpu: str, capability: str) -> dict[str, Any]:
    """bf16 vs float32 matmul speed on this CPU (`cpu`, `capability` from harness.devices), measured
    once per machine and cached on disk."""
    import torch

    from harness import locks

    def measure() -> dict[str, Any]:
        flops = 2 * _CALIBRATION_SIZE**3
        fp32, bf16 = time_matmuls(_CALIBRATION_SIZE, _CALIBRATION_ROUNDS)
        return {
            "cpu": cpu,
            "capability": capability,
            "torch": torch.__version__,
            "matmul": f"{_CALIBRATION_SIZE}x{_CALIBRATION_SIZE}, 1 thread",
            "fp32_gflops": round(flops / fp32 / 1e9, 2),
            "bf16_gflops": round(flops / bf16 / 1e9, 2),
            "bf16_slowdown": round(bf16 / fp32, 2),
        }

    return locks.measure_once(calibration_file(cpu, capability), measure, what="the bf16 calibration of this CPU")
