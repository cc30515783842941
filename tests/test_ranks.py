"""Several ranks train one model: every rank starts from rank 0's weights (LoRA adapters included),
holds the same weights after every step, and a resumed 2-process run ends where an uninterrupted
one does (each rank's RNG stream is checkpointed). Real gloo process groups, real tiny-qwen2."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest
import torch

from harness.config import VariantConfig
from harness.data.mix import build_mix
from harness.model import Embedder
from harness.train.loop import train

from .conftest import run_ranks

LORA = {"r": 4, "alpha": 8, "targets": ["q_proj", "v_proj"]}


def _config(**train: Any) -> VariantConfig:
    return VariantConfig.model_validate({
        "model": {"backbone": "tiny-qwen2", "query_max_length": 24, "passage_max_length": 48},
        "data": {"total_rows": 64, "hard_negatives": 2, "sources": {"stdlib-code": {}, "cldr-bitext": {"langs": ["yo"]}}},
        # float32 pinned: the comparisons below are numeric
        "train": {"batch_size": 4, "steps": 3, "lr": 1e-3, "log_every": 1, "warmup_ratio": 0.0, "bf16": False,
                  **train},
    })


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_BUILT: dict[str, Embedder] = {}


def _keep_built_model() -> None:
    """Keep a handle on the model `train` builds (a stopped run saves nothing)."""
    import harness.train.loop as loop

    original = loop._prepare_model

    def keep(config: VariantConfig) -> Embedder:
        _BUILT["model"] = original(config)
        return _BUILT["model"]

    loop._prepare_model = keep  # type: ignore[assignment]


def _weights() -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in _BUILT["model"].state_dict().items()}


def _worker(rank: int, port: int, out: str, cache: str, train_args: dict[str, Any], stop_after: int,
            work: str | None) -> None:
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "HARNESS_CACHE": cache})
    torch.set_num_threads(1)
    from harness.train.distributed import init_from_env

    world = init_from_env()
    _keep_built_model()
    config = _config(**train_args)
    rows, _ = build_mix(config.data)
    log, _ = train(config, rows, Path(out) / "model", world=world, show_progress=False, stop_after=stop_after,
                   work_dir=Path(work) if work else None)
    torch.save({"log": log, "state": _weights()}, Path(out) / f"rank{rank}.pt")
    torch.distributed.barrier()  # leave together: see tests/test_loss.py::_loss_worker
    torch.distributed.destroy_process_group()


def _two_ranks(tmp_path: Path, train_args: dict[str, Any], stop_after: int, work: Path | None = None
               ) -> list[dict[str, Any]]:
    out = tmp_path / f"ranks-{stop_after}-{len(list(tmp_path.iterdir()))}"
    out.mkdir()
    from harness.backbones import resolve_path

    resolve_path("tiny-qwen2")  # built once here, as launch_torchrun does, not by two racing ranks
    run_ranks(_worker, (_free_port(), str(out), os.environ["HARNESS_CACHE"], train_args, stop_after,
                        str(work) if work else None))
    return [torch.load(out / f"rank{r}.pt") for r in (0, 1)]


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["full", "lora"])
def test_every_rank_holds_the_weights_of_one_process_over_the_global_batch(
        mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if mode == "lora":
        pytest.importorskip("peft")
    import harness.train.loop as loop

    monkeypatch.setattr(loop, "_prepare_model", loop._prepare_model)  # restored after the test
    _keep_built_model()
    extra = {"lora": LORA} if mode == "lora" else {}
    steps = 3
    rank0, rank1 = _two_ranks(tmp_path, {"batch_size": 4, **extra}, stop_after=steps)

    config = _config(batch_size=8, **extra)  # the same global batch in one process
    rows, _ = build_mix(config.data)
    log, _ = train(config, rows, tmp_path / "single", show_progress=False, stop_after=steps)
    single = _weights()
    between_ranks = _max_diff(rank0["state"], rank1["state"])
    from_single = _max_diff(rank0["state"], single)
    print(f"{mode}: max |rank0 - rank1| = {between_ranks:.3g}, max |rank0 - one process| = {from_single:.3g}")
    assert between_ranks == 0.0, f"{mode}: the ranks hold different weights after {steps} steps ({between_ranks:.3g})"
    assert [e["loss"] for e in rank0["log"]] == pytest.approx([e["loss"] for e in log], rel=1e-4)
    for name, value in single.items():
        torch.testing.assert_close(rank0["state"][name], value, atol=2e-6, rtol=1e-4, msg=name)
    moved = [k for k in single if "lora_B" in k] if mode == "lora" else list(single)
    base = Embedder.from_config(config.model).state_dict()
    assert any(not torch.equal(single[k], base.get(k, torch.zeros_like(single[k]))) for k in moved)  # it learned


@pytest.mark.slow
def test_a_resumed_two_process_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path: Path) -> None:
    """LoRA dropout draws from each rank's own stream; the run stops after its step-2 checkpoint (one
    step later, so the resume redoes step 3) and a second 2-process run resumes from it."""
    pytest.importorskip("peft")
    args = {"batch_size": 4, "steps": 4, "checkpoint_every": 2, "lora": {**LORA, "dropout": 0.2}}
    whole = _two_ranks(tmp_path, args, stop_after=4)
    work = tmp_path / "work"
    _two_ranks(tmp_path, args, stop_after=3, work=work)
    assert sorted(p.name for p in work.iterdir()) == ["step-00000002"]
    resumed = _two_ranks(tmp_path, args, stop_after=4, work=work)
    assert [e["step"] for e in resumed[0]["log"]] == [1, 2, 3, 4]
    for rank in (0, 1):
        diff = _max_diff(resumed[rank]["state"], whole[rank]["state"])
        assert diff == 0.0, f"rank {rank}: the resumed run differs from the uninterrupted one by {diff:.3g}"
    from harness.train.trackers import deterministic_fields

    assert [deterministic_fields(e) for e in resumed[0]["log"]] == [deterministic_fields(e) for e in whole[0]["log"]]
