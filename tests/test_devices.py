"""Devices and precision: `device: auto`, `bf16: auto`, every tensor on the model's device."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from harness import calibration as cpu_calibration
from harness import devices
from harness.config import ModelConfig, TrainConfig, VariantConfig
from harness.data.rows import TrainRow
from harness.errors import HarnessError
from harness.model import Embedder
from harness.train.distributed import World
from harness.train.step import TrainStep
from tests.simulated_device import DEVICE, PlacementError, SimulatedDevice, on_device

TEXTS = ["where is the station", "def add(a, b):\n    return a + b", "Addis Ababa ni ketema ya Ethiopia"]


# ----------------------------------------------------------------------------- device resolution


def test_auto_is_cpu_without_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert devices.resolve_device("auto") == torch.device("cpu")
    assert devices.resolve_device("cpu") == torch.device("cpu")


def test_auto_is_the_local_rank_gpu_under_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert devices.resolve_device("auto") == torch.device("cuda", 3)
    monkeypatch.delenv("LOCAL_RANK")
    assert devices.resolve_device("auto") == torch.device("cuda")
    assert devices.resolve_device("cuda:1") == torch.device("cuda", 1)


def test_bad_or_unavailable_devices_are_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(HarnessError, match=r"'gpu'.*auto, cpu, cuda, cuda:N, mps"):
        devices.resolve_device("gpu")
    with pytest.raises(HarnessError, match="no CUDA GPU"):
        devices.resolve_device("cuda")
    with pytest.raises(ValueError, match="device"):
        TrainConfig(device="tpu")


def test_nccl_only_for_cuda_tensors() -> None:
    assert devices.process_group_backend(torch.device("cuda", 0)) == "nccl"
    assert devices.process_group_backend(torch.device("cpu")) == "gloo"


# ----------------------------------------------------------------------------- precision


@pytest.fixture
def calibration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A fresh per-machine calibration cache (the in-process memo is cleared too), and the real CPU:
    these tests set the CPU's flags and calibration themselves, which a simulated CPU would mask."""
    monkeypatch.setenv("HARNESS_MACHINE_CACHE", str(tmp_path / "machine"))
    monkeypatch.delenv(devices.SIMULATED_CPU_ENV, raising=False)
    measure = cpu_calibration.cpu_bf16_calibration
    measure.cache_clear()
    yield
    measure.cache_clear()


@pytest.mark.precision
def test_bf16_auto_follows_native_cpu_support(monkeypatch: pytest.MonkeyPatch, calibration: None) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(devices, "cpu_flags", lambda: {"avx2", "amx_bf16"})
    assert devices.resolve_precision("auto", cpu) == devices.Precision(True, "bf16: auto -> bf16 (CPU has amx_bf16)")
    monkeypatch.setattr(devices, "cpu_flags", lambda: {"avx2"})
    monkeypatch.setattr(cpu_calibration, "cpu_bf16_calibration", lambda *cpu: {"bf16_slowdown": 40.0, "capability": "AVX2"})
    auto = devices.resolve_precision("auto", cpu)
    assert not auto.bf16 and auto.name == "fp32" and "40.0x slower" in auto.reason
    monkeypatch.setattr(cpu_calibration, "cpu_bf16_calibration", lambda *cpu: {"bf16_slowdown": 0.6, "capability": "ARM"})
    assert devices.resolve_precision("auto", cpu).bf16
    assert not devices.resolve_precision(False, cpu).bf16


@pytest.mark.precision
def test_forced_bf16_warns_once_with_the_measured_slowdown(monkeypatch: pytest.MonkeyPatch,
                                                            calibration: None) -> None:
    monkeypatch.setattr(devices, "cpu_flags", lambda: set())
    monkeypatch.setattr(cpu_calibration, "cpu_bf16_calibration", lambda *cpu: {"bf16_slowdown": 55.5, "capability": "AVX2"})
    devices._warn_forced_bf16.cache_clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert devices.resolve_precision(True, torch.device("cpu")).bf16
        assert devices.resolve_precision(True, torch.device("cpu")).bf16
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "55.5x slower than float32" in messages[0]


def _gpus(monkeypatch: pytest.MonkeyPatch, *gpus: tuple[str, int, int]) -> None:
    """torch.cuda answering as on a machine with these GPUs (name, major, minor): only the lowest
    calls are replaced, so torch's own is_bf16_supported / get_device_capability / get_device_name run."""
    from types import SimpleNamespace

    def properties(device: object = None) -> SimpleNamespace:
        index = torch.cuda._utils._get_device_index(device, optional=True)
        name, major, minor = gpus[index]
        return SimpleNamespace(name=name, major=major, minor=minor)

    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", properties)
    # a bf16 tensor can be made on every CUDA GPU (emulated before Ampere): what makes torch's default say True
    monkeypatch.setattr(torch.cuda, "_check_bf16_tensor_supported", lambda device: True)


def test_bf16_auto_on_cuda_needs_compute_capability_8_of_the_device_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """A V100 (7.0) reports bf16 "supported" through emulation; auto must still pick float32 there."""
    _gpus(monkeypatch, ("Tesla V100-SXM2-16GB", 7, 0))
    assert torch.cuda.is_bf16_supported() is True  # torch's default answer on a V100: emulation counts
    assert torch.cuda.is_bf16_supported(including_emulation=False) is False
    v100 = devices.resolve_precision("auto", torch.device("cuda", 0))
    assert not v100.bf16 and "Tesla V100-SXM2-16GB (compute capability 7.0 < 8.0) has no native bf16" in v100.reason
    assert devices.resolve_precision("auto", torch.device("cuda")).name == "fp32"  # no index: the current one
    # a node with an A100 as device 0 and a T4 as device 1: each rank asks about its own GPU
    _gpus(monkeypatch, ("NVIDIA A100-SXM4-80GB", 8, 0), ("Tesla T4", 7, 5))
    assert devices.resolve_precision("auto", torch.device("cuda", 0)).bf16
    t4 = devices.resolve_precision("auto", torch.device("cuda", 1))
    assert not t4.bf16 and "Tesla T4 (compute capability 7.5 < 8.0)" in t4.reason
    assert "says True for the current device" in t4.reason  # torch's cross-check asked about device 0


def test_calibration_is_measured_once_per_machine(monkeypatch: pytest.MonkeyPatch, calibration: None) -> None:
    here = (devices.cpu_model(), devices.cpu_capability())
    first = cpu_calibration.cpu_bf16_calibration(*here)
    assert first["fp32_gflops"] > 0 and first["bf16_gflops"] > 0 and first["capability"] == here[1]
    files = list(cpu_calibration.calibration_file(*here).parent.glob("cpu-bf16-*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text()) == first
    cpu_calibration.cpu_bf16_calibration.cache_clear()
    files[0].write_text(json.dumps({**first, "bf16_slowdown": 123.0}))  # read back, not re-measured
    assert cpu_calibration.cpu_bf16_calibration(*here)["bf16_slowdown"] == 123.0
    monkeypatch.setattr(devices, "cpu_flags", lambda: {"avx2"})  # no bf16 flags: devices asks the calibration
    expected = f"bf16 is emulated on this CPU ({here[1]}): calibration matmul 123.0x slower than float32"
    assert devices.cpu_bf16_native() == (False, expected)


def test_calibration_leaves_torchs_thread_count_as_it_was(calibration: None) -> None:
    """It measures on one thread; the process's own setting (2 here) is back afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cpu_calibration.cpu_bf16_calibration("test CPU", "AVX2")  # a fresh cache: measured here
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------------- placement


def _step(model: Embedder, tc: TrainConfig) -> TrainStep:
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return TrainStep(model, params, optimizer, scheduler, tc, World(), bf16=False, lengths=(16, 32))


@pytest.mark.parametrize(("backbone", "pooling", "attention", "matryoshka"), [
    ("tiny-qwen2", "last_token", "causal", {"dims": [64, 32], "weights": [1.0, 0.5]}),
    ("tiny-qwen2", "mean", "bidirectional", None),
])
@pytest.mark.slow
def test_a_training_step_keeps_every_tensor_on_the_model_device(backbone: str, pooling: str, attention: str,
                                                                matryoshka: dict | None) -> None:
    model = Embedder.from_config(ModelConfig(backbone=backbone, pooling=pooling, attention=attention))
    tc = TrainConfig(matryoshka=matryoshka, grad_clip=1.0)
    queries, passages, targets = TEXTS, [t.upper() for t in TEXTS] + ["a hard negative"], [0, 1, 2]
    with SimulatedDevice() as mode:
        model.to(DEVICE)
        step = _step(model, tc)
        loss = step.micro(queries, passages, targets)
        assert on_device(loss) and np.isfinite(loss.item())
        assert all(on_device(p.grad) for p in step.params if p.grad is not None)
        step.finish()
        assert all(on_device(p) for p in model.parameters())
    assert mode.violations == [] and mode.ops_on_device > 100


@pytest.mark.slow
def test_grad_cache_step_keeps_every_tensor_on_the_model_device() -> None:
    model = Embedder.from_config(ModelConfig(backbone="tiny-qwen2", pooling="mean"))
    tc = TrainConfig(grad_cache=True, grad_cache_chunk=2)
    with SimulatedDevice() as mode:
        model.to(DEVICE)
        step = _step(model, tc)
        step.micro(TEXTS, [t.upper() for t in TEXTS], [0, 1, 2])
        step.finish()
    assert mode.violations == []


@pytest.mark.parametrize("grad_cache", [False, True])
@pytest.mark.slow
def test_focal_and_hard_negative_mixing_keep_every_tensor_on_the_model_device(grad_cache: bool) -> None:
    """KaLM-V2's loss options (focal weights, the mixing draw, each row's negative index) under
    Matryoshka, in the plain step and on GradCache's cached embeddings."""
    model = Embedder.from_config(ModelConfig(backbone="tiny-qwen2", pooling="mean"))
    tc = TrainConfig(focal_gamma=1.0, hard_negative_mixing={"synthetic": 2, "detach": False},
                     matryoshka={"dims": [64, 32]}, grad_cache=grad_cache, grad_cache_chunk=2)
    passages = [TEXTS[0].upper(), "negative one", "negative two", TEXTS[1].upper(), "negative three",
                "negative four", "negative five", TEXTS[2].upper()]
    with SimulatedDevice() as mode:
        model.to(DEVICE)
        step = _step(model, tc)
        loss = step.micro(TEXTS, passages, [0, 3, 7])
        assert on_device(loss) and np.isfinite(loss.item())
        step.finish()
    assert mode.violations == [] and mode.ops_on_device > 100


@pytest.mark.slow
def test_the_checker_catches_a_host_tensor() -> None:
    """The placement tests can fail: a batch left on the host is an error, as on a GPU."""
    model = Embedder.from_config(ModelConfig(backbone="minilm"))
    with SimulatedDevice() as mode:
        model.to(DEVICE)
        host_batch = model.tokenizer(TEXTS, padding=True, return_tensors="pt")
        with pytest.raises(PlacementError, match="host tensor"):
            model(dict(host_batch))
        embeddings = model(model.to_device(host_batch))
        with pytest.raises(PlacementError, match="host tensor"):
            torch.nn.functional.cross_entropy(embeddings @ embeddings.T, torch.tensor([0, 1, 2]))
    assert len(mode.violations) == 2


@pytest.mark.slow
def test_encode_runs_on_the_model_device_and_gives_the_host_result() -> None:
    model = Embedder.from_config(ModelConfig(backbone="tiny-qwen2", pooling="last_token"))
    on_host = model.encode(TEXTS, max_length=32, batch_size=2)
    with SimulatedDevice() as mode:
        model.to(DEVICE)
        on_simulated = model.encode(TEXTS, max_length=32, batch_size=2)
    assert mode.violations == [] and mode.ops_on_device > 0
    np.testing.assert_allclose(on_simulated, on_host, atol=1e-6)


@pytest.mark.slow
def test_the_training_loop_runs_on_the_resolved_device(tmp_path: Path) -> None:
    """The whole loop — sampler, batches, targets, loss, clipping, AdamW, logging — on the device."""
    from harness.train.loop import train

    config = VariantConfig.model_validate({
        "model": {"backbone": "tiny-qwen2", "pooling": "mean", "query_max_length": 16, "passage_max_length": 16},
        "train": {"steps": 2, "batch_size": 4, "log_every": 1, "bf16": False},
    })
    rows = [TrainRow(query=f"query {i}", pos=[f"passage {i}"], neg=[f"negative {i}"], task=f"t{i % 2}")
            for i in range(8)]
    with SimulatedDevice() as mode:
        log, summary = train(config, rows, tmp_path / "model", show_progress=False, stop_after=2,
                             device=DEVICE, precision=devices.Precision(False, "test"))
    assert mode.violations == [] and summary == {"stopped_at": 2}
    assert [e["step"] for e in log] == [1, 2] and all(np.isfinite(e["loss"]) for e in log)


@pytest.mark.slow
def test_data_parallel_encode_over_replicas_equals_one_device() -> None:
    """Several GPUs in one eval job: batches dealt to one replica per device give the same vectors
    (here two CPU replicas stand in for two GPUs; the CPU path itself uses no replica)."""
    model = Embedder.from_config(ModelConfig(backbone="minilm"))
    texts = [f"{t} {i}" for i in range(7) for t in TEXTS]
    single = model.encode(texts, max_length=32, batch_size=4)
    replicas = model.replicate([torch.device("cpu")])
    assert replicas[0] is not model and replicas[0].backbone is not model.backbone
    parallel = model.encode(texts, max_length=32, batch_size=4, replicas=replicas)
    np.testing.assert_allclose(parallel, single, atol=1e-6)


def test_an_eval_job_uses_every_visible_gpu_only_when_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert devices.encode_devices("auto") == [torch.device("cuda", i) for i in range(4)]
    assert devices.encode_devices("cuda:2") == [torch.device("cuda", 2)]
    monkeypatch.setenv("LOCAL_RANK", "1")  # one rank of a torchrun group keeps to its own GPU
    assert devices.encode_devices("auto") == [torch.device("cuda", 1)]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert devices.encode_devices("auto") == [torch.device("cpu")]


@pytest.mark.precision
def test_precision_is_in_the_stage_keys_and_auto_finds_either(monkeypatch: pytest.MonkeyPatch,
                                                               fresh_cache: Path) -> None:
    """A stage computed in bf16 on a GPU node is found by a CPU login node that would pick float32."""
    from harness.stages import eval_stage, train_stage

    config = VariantConfig.model_validate({"data": {"sources": {"stdlib-code": {}}}})
    assert config.train.bf16 == "auto" and config.eval.bf16 == "auto"
    monkeypatch.setattr(devices, "cpu_bf16_native", lambda: (True, "pretend AMX"))
    on_gpu_node = train_stage(config)
    monkeypatch.setattr(devices, "cpu_bf16_native", lambda: (False, "pretend AVX2"))
    here = train_stage(config)
    assert (on_gpu_node.key["precision"], here.key["precision"]) == ("bf16", "fp32")
    assert on_gpu_node.hash != here.hash
    on_gpu_node.dir.mkdir(parents=True)  # the GPU job finished its stage
    assert train_stage(config).hash == on_gpu_node.hash
    forced = config.model_copy(deep=True)
    forced.train.bf16 = False  # an explicit setting looks only under its own precision
    assert train_stage(forced).key["precision"] == "fp32"
    evaluated = eval_stage(config, "HarnessCodeRetrieval", "rev")
    assert evaluated.key["train"] == on_gpu_node.hash and evaluated.key["precision"] == "fp32"


@pytest.mark.slow
def test_an_evaluation_encodes_each_recurring_text_once() -> None:
    """mteb asks per subset and side; texts shared across subsets (CLDR's English side) are encoded once
    and the vectors equal a fresh encode."""
    from harness.evaluate.encoder import HarnessEncoder

    model = Embedder.from_config(ModelConfig(backbone="minilm"))
    calls: list[int] = []
    original = model.encode

    def counting(texts, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(len(texts))
        return original(texts, **kwargs)

    model.encode = counting  # type: ignore[method-assign]
    encoder = HarnessEncoder(model, name="t/memo", revision="0", show_progress=False)
    first = encoder._encode_once([*TEXTS, TEXTS[0]], 32, "a")
    second = encoder._encode_once(["new text", TEXTS[1]], 32, "b")
    assert calls == [3, 1]  # duplicates within and across calls encoded once
    np.testing.assert_allclose(first[3], first[0])
    np.testing.assert_allclose(second[1], original([TEXTS[1]], max_length=32)[0], atol=1e-6)
