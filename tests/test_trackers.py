"""train.report_to: every tracker fed offline and read back with its own reader; the local log's
new fields; a tracker that cannot start is one warning and training goes on."""

from __future__ import annotations

import builtins
import json
import os
from pathlib import Path

import numpy as np
import pytest

from harness.config import VariantConfig
from harness.data.mix import build_mix
from harness.train.loop import train
from harness.train.trackers import RUN_ENV

FIELDS = {"step", "loss", "lr", "grad_norm", "examples_per_second", "tokens_per_second", "memory_mb"}


def _config(report_to: list[str]) -> VariantConfig:
    return VariantConfig.model_validate({
        "model": {"backbone": "tiny-qwen2", "query_max_length": 24, "passage_max_length": 48},
        "data": {"total_rows": 32, "sources": {"cldr-bitext": {"langs": ["yo", "am"]}}},
        "train": {"batch_size": 4, "steps": 3, "lr": 1e-3, "log_every": 1, "bf16": False, "report_to": report_to},
    })


def _train(config: VariantConfig, out: Path) -> list[dict]:
    rows, _ = build_mix(config.data)
    log, _ = train(config, rows, out, show_progress=False)
    return log


@pytest.mark.slow
def test_local_log_has_grad_norm_and_throughput(tmp_path: Path, tracking: Path) -> None:
    log = _train(_config([]), tmp_path / "m")
    assert [e["step"] for e in log] == [1, 2, 3]
    for entry in log:
        assert set(entry) == FIELDS
        assert entry["grad_norm"] > 0 and entry["examples_per_second"] > 0 and entry["memory_mb"] > 0
        # tokens per example: a query (<= 24 tokens) and one passage (<= 48) each
        assert 2 * entry["examples_per_second"] <= entry["tokens_per_second"] <= 72 * entry["examples_per_second"]
    assert not tracking.exists()  # no tracker named, none started


@pytest.mark.slow
def test_tensorboard_events_read_back(tmp_path: Path, tracking: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = _train(_config(["tensorboard"]), tmp_path / "m")
    folder = tracking / "tensorboard" / "tiny" / "base" / "seed-0"
    events = EventAccumulator(str(folder))
    events.Reload()
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [1, 2, 3]
    assert np.allclose([e.value for e in loss], [e["loss"] for e in log], atol=1e-5)
    assert {"train/lr", "train/grad_norm", "train/examples_per_second", "train/tokens_per_second",
            "train/memory_mb"} <= set(events.Tags()["scalars"])
    assert "config" in events.Tags()["tensors"][0] or any("config" in t for t in events.Tags()["tensors"])


@pytest.mark.slow
def test_wandb_offline_run(tmp_path: Path, tracking: Path) -> None:
    log = _train(_config(["wandb"]), tmp_path / "m")
    runs = list((tracking / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    # wandb 0.31 ships no Python reader for its offline transaction log: its records are protobuf,
    # whose history items hold each key and its value as JSON text, so both are in the file verbatim
    record = next(runs[0].glob("run-*.wandb")).read_bytes()
    assert b"train/loss" in record and b"train/grad_norm" in record and b"train/tokens_per_second" in record
    assert all(json.dumps(e["loss"]).encode() in record for e in log)
    assert b"tiny/base/seed-0" in record and b"tiny-qwen2" in record and b"t" * 12 in record


@pytest.mark.slow
def test_mlflow_local_store(tmp_path: Path, tracking: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    def mlflow_env() -> dict[str, str]:  # (libraries imported on the way set their own KMP_*, TORCHINDUCTOR_*)
        return {k: v for k, v in os.environ.items() if k.startswith("MLFLOW")}

    environment = mlflow_env()
    log = _train(_config(["mlflow"]), tmp_path / "m")
    # the file-store switch was set around the tracker's calls only; no tracking URI or experiment id left
    assert mlflow_env() == environment
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # this test's own reader needs it
    mlflow.set_tracking_uri((tracking / "mlruns").resolve().as_uri())
    runs = mlflow.search_runs(experiment_names=["tiny"], output_format="list")
    assert [r.info.run_name for r in runs] == ["tiny/base/seed-0"]
    history = mlflow.MlflowClient().get_metric_history(runs[0].info.run_id, "train/loss")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == [1, 2, 3]
    assert sorted(history, key=lambda m: m.step)[-1].value == pytest.approx(log[-1]["loss"], abs=1e-5)
    assert runs[0].data.params["model.backbone"] == "tiny-qwen2"
    assert runs[0].data.tags["stage.train"] == "t" * 12


@pytest.mark.slow
def test_trackio_local(tmp_path: Path, tracking: Path) -> None:
    import trackio  # noqa: F401

    _train(_config(["trackio"]), tmp_path / "m")
    stored = list((tracking / "trackio").rglob("*"))
    assert any(p.is_file() and p.stat().st_size > 0 for p in stored), stored


@pytest.mark.slow
def test_tracker_that_cannot_start_warns_once_and_training_goes_on(
        tmp_path: Path, tracking: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    real_import = builtins.__import__

    def no_wandb(name: str, *args: object, **kwargs: object) -> object:
        if name == "wandb" or name.startswith("wandb."):
            raise ImportError("No module named 'wandb'", name="wandb")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    log = _train(_config(["wandb", "tensorboard"]), tmp_path / "m")
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "report_to" in line]
    assert warnings == ["warning: train.report_to wandb: cannot start (wandb is not installed: "
                        "pip install 'harness[wandb]'); training goes on without it"]
    assert len(log) == 3 and (tracking / "tensorboard" / "tiny" / "base" / "seed-0").is_dir()


def test_report_to_is_validated_and_not_in_the_train_key() -> None:
    from harness.errors import HarnessError
    from harness.overrides import apply_overrides, check_values
    from harness.stages import train_stage

    assert train_stage(_config(["tensorboard", "mlflow"])).hash == train_stage(_config([])).hash
    assert "report_to" not in _config([]).to_dict()["train"]  # unset: no hash of any existing variant moves
    base = {"train": {}}
    with pytest.raises(HarnessError, match="Input should be 'tensorboard', 'wandb', 'mlflow' or 'trackio'"):
        check_values(base, apply_overrides(base, {"train.report_to": ["tensorbored"]}, VariantConfig),
                     {"train.report_to": ["tensorbored"]}, VariantConfig, "test")
    assert RUN_ENV == "HARNESS_TRACKING_RUN"
