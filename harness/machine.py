"""The machine that made a stage's numbers, recorded beside them.

Scores move with the hardware (bf16 vs float32 kernels, near-ties in a teacher's ranking that flip
between CPUs), so the train summary and every eval record name the CPU model and its vector
capability, or the GPU model and its compute capability; run.json and the report collect them, so
two result sets that differ can be told apart.
"""

from __future__ import annotations

from typing import Any


def machine_of(device: Any) -> dict[str, Any]:
    """What ran on `device` (a torch.device or its name): GPU model + compute capability, or CPU model +
    capability (torch's vector ISA; `HARNESS_SIMULATE_CPU` shows as simulated) + native bf16."""
    import torch

    from harness.devices import cpu_bf16_native, cpu_capability, cpu_model

    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        return {"device": "cuda", "gpu": torch.cuda.get_device_name(index), "compute_capability": f"{major}.{minor}",
                "gpus": torch.cuda.device_count()}
    if device.type == "cpu":
        return {"device": "cpu", "cpu": cpu_model(), "cpu_capability": cpu_capability(),
                "bf16_native": cpu_bf16_native()[0]}
    return {"device": device.type}


def describe_machine(machine: dict[str, Any] | None) -> str:
    """One line for reports: `Intel Xeon ... (AVX512, bf16 native)` / `NVIDIA A100 (sm 8.0)`."""
    if not machine:
        return "unknown (recorded before machines were)"
    if "gpu" in machine:
        return f"{machine['gpu']} (compute capability {machine['compute_capability']})"
    if "cpu" in machine:
        bf16 = ", bf16 native" if machine.get("bf16_native") else ""
        return f"{machine['cpu']} ({machine['cpu_capability']}{bf16})"
    return str(machine.get("device", "unknown"))
