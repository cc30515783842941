"""bench/gpu_smoke.sh, the maintainers' GPU check, runs unchanged on a CPU-only machine."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from .conftest import REPO


@pytest.mark.slow
def test_gpu_smoke_runs_on_the_cpu_in_tiny_mode(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(["bash", str(REPO / "bench" / "gpu_smoke.sh"), "--cpu", "--tiny", "--steps", "6",
                           "--encode-texts", "32", "--workdir", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=900)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    for line in ("PASS  training ran (torchrun, one-process group)", "PASS  losses finite", "PASS  loss decreasing",
                 "PASS  SentenceTransformer(export) equals the harness",
                 "PASS  ranks agree after 4 steps (LoRA, gloo): max |w - w_rank0| 0 over all parameters and ranks"):
        assert line in out
    assert "FAIL" not in out and "5/5 checks passed" in out
    assert "rank 1: cpu (" in out  # each rank's device and precision are listed
    assert "tokens/s" in out and "texts/s" in out and "of the measured" in out
