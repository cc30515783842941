"""One device + precision resolution (devices.resolve_compute), asked by every stage and command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from harness import devices
from harness.config import VariantConfig
from harness.errors import HarnessError

HARNESS = Path(__file__).resolve().parents[1] / "harness"


@pytest.mark.parametrize(("cpu", "name"), [("AVX2", "fp32"), ("AVX512_BF16", "bf16"), ("AMX", "bf16")])
def test_auto_resolves_per_cpu_and_the_stages_commands_and_teacher_agree(
        cpu: str, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.cli.render import machine_text
    from harness.data.mix import teacher_precision
    from harness.stages import precisions_to_try

    monkeypatch.setenv(devices.SIMULATED_CPU_ENV, cpu)
    compute = devices.resolve_compute("auto", "auto")
    assert compute.device == torch.device("cpu") and compute.precision.name == name and compute.bf16 == (name == "bf16")
    assert compute == devices.resolve_compute(torch.device("cpu"), "auto")  # a device is taken as it is
    assert devices.resolve_compute("cpu", False).precision == devices.Precision(False, "bf16: false")
    config = VariantConfig.model_validate({"data": {"sources": {"stdlib-code": {}},
                                                    "filter": {"teacher": "minilm", "top_k": 5}}})
    assert precisions_to_try("auto", "auto")[0] == name
    assert teacher_precision(config.data) == name
    assert machine_text(config).splitlines() == [f"train: {compute.describe()}", f"eval: {compute.describe()}"]


def test_a_bad_device_is_one_clear_error() -> None:
    with pytest.raises(HarnessError, match="allowed values are auto, cpu, cuda, cuda:N, mps"):
        devices.resolve_compute("gpu", "auto")


def test_no_module_resolves_device_or_precision_by_itself() -> None:
    """resolve_device / resolve_precision are resolve_compute's parts; callers ask resolve_compute."""
    callers = [f"{path.relative_to(HARNESS)}:{n}" for path in HARNESS.rglob("*.py") if path.name != "devices.py"
               for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
               if re.search(r"\bresolve_(device|precision)\(", line)]
    assert callers == []
