"""The training core: attention modes, Matryoshka, GradCache equality, 2-process DDP equality,
and resume after a real kill — on the real tiny-qwen2 path and the offline suite's data."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness.config import ModelConfig, VariantConfig
from harness.data.mix import build_mix
from harness.model import Embedder
from harness.train.gradcache import cached_backward
from harness.train.loss import info_nce, matryoshka_info_nce
from harness.train.loop import train

from .conftest import REPO, run_ranks, write


def _tiny_config(**train: object) -> VariantConfig:
    return VariantConfig.model_validate({
        "model": {"backbone": "tiny-qwen2", "query_max_length": 24, "passage_max_length": 48},
        "data": {"total_rows": 64, "hard_negatives": 2, "sources": {"stdlib-code": {}, "cldr-bitext": {"langs": ["yo"]}}},
        # float32 pinned: the tolerances below are float32's, and `bf16: auto` would pick bf16 on a
        # CPU with AMX / AVX512_BF16 (a bf16 step differs between one process and two).
        "train": {"batch_size": 4, "steps": 2, "lr": 1e-3, "log_every": 1, "bf16": False, **train},
    })


@pytest.mark.parametrize(("attention", "first_token_moves"), [("causal", False), ("bidirectional", True)])
@pytest.mark.slow
def test_bidirectional_attention_sees_later_tokens(attention: str, first_token_moves: bool) -> None:
    embedder = Embedder.from_config(ModelConfig(backbone="tiny-qwen2", attention=attention)).eval()
    batch_a = embedder.tokenize(["the cat sat on the mat"], 16)
    batch_b = embedder.tokenize(["the cat sat on the hat"], 16)
    assert batch_a["input_ids"].shape == batch_b["input_ids"].shape

    def states(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = embedder._attention_mask(batch["input_ids"], batch["attention_mask"])
        return embedder.backbone(input_ids=batch["input_ids"], attention_mask=mask).last_hidden_state[0]

    with torch.no_grad():
        moved = (states(batch_a)[0] - states(batch_b)[0]).abs().max().item()
    assert (moved > 1e-4) is first_token_moves, moved


@pytest.mark.slow
def test_bidirectional_padding_does_not_leak() -> None:
    embedder = Embedder.from_config(ModelConfig(backbone="tiny-qwen2", attention="bidirectional"))
    alone = embedder.encode(["short"], max_length=16)
    padded = embedder.encode(["short", "a much longer sentence that forces padding"], max_length=16, batch_size=2)
    torch.testing.assert_close(torch.from_numpy(padded[:1]), torch.from_numpy(alone), atol=1e-5, rtol=0)


def test_matryoshka_loss_is_the_weighted_sum_of_renormalised_prefix_losses() -> None:
    torch.manual_seed(0)
    q, p = F.normalize(torch.randn(4, 16), dim=-1), F.normalize(torch.randn(12, 16), dim=-1)
    targets = torch.tensor([0, 3, 6, 9])
    got = matryoshka_info_nce(q, p, targets, 0.05, [16, 8, 4], [1.0, 0.3, 0.1])
    expected = sum(w * F.cross_entropy(F.normalize(q[:, :d], dim=-1) @ F.normalize(p[:, :d], dim=-1).T / 0.05, targets)
                   for d, w in [(16, 1.0), (8, 0.3), (4, 0.1)])
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(matryoshka_info_nce(q, p, targets, 0.05), info_nce(q, p, targets, 0.05))


@pytest.mark.slow
def test_grad_cache_gives_the_plain_batch_loss_and_gradients() -> None:
    rows, _ = build_mix(_tiny_config().data)
    queries = [r.query for r in rows[:8]]
    # one positive and two negatives (the next rows' positives) per query, as a group of 3
    passages = [text for i in range(8) for text in (rows[i].pos[0], rows[i + 8].pos[0], rows[i + 16].pos[0])]
    targets = torch.tensor([i * 3 for i in range(8)])

    def run(use_cache: bool) -> tuple[float, dict[str, torch.Tensor]]:
        embedder = Embedder.from_config(ModelConfig(backbone="tiny-qwen2"))
        embedder.train()

        def loss_fn(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
            return matryoshka_info_nce(q, p, targets, 0.02, [64, 32], [1.0, 0.5])

        if use_cache:
            loss = cached_backward(embedder.embed, queries, passages, (24, 48), loss_fn, chunk_size=3).item()
        else:
            value = loss_fn(embedder.embed(queries, 24), embedder.embed(passages, 48))
            value.backward()
            loss = value.item()
        return loss, {n: p.grad.clone() for n, p in embedder.named_parameters() if p.grad is not None}

    plain_loss, plain_grads = run(False)
    cached_loss, cached_grads = run(True)
    assert cached_loss == pytest.approx(plain_loss, rel=1e-5)
    assert plain_grads.keys() == cached_grads.keys()
    for name, grad in plain_grads.items():
        # float32 sums in another order: tolerance relative to the tensor's own scale
        scale = float(grad.abs().max()) or 1.0
        torch.testing.assert_close(cached_grads[name], grad, atol=1e-6 * scale, rtol=1e-4, msg=name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ddp_worker(rank: int, world_size: int, port: int, out: str, cache: str) -> None:
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "HARNESS_CACHE": cache})
    torch.set_num_threads(1)
    from harness.train.distributed import init_from_env

    world = init_from_env()
    _remember_models()
    config = _tiny_config(steps=1, batch_size=4, warmup_ratio=0.0, bf16=False)
    rows, _ = build_mix(config.data)
    log, _ = train(config, rows, Path(out) / "model", world=world, show_progress=False, stop_after=1)
    if rank == 0:
        torch.save({"loss": log[0]["loss"], "state": _weights(Path(out))}, Path(out) / "ddp.pt")
    torch.distributed.barrier()  # leave together: see tests/test_loss.py::_loss_worker
    torch.distributed.destroy_process_group()


_LAST_MODEL: dict[str, torch.nn.Module] = {}


def _remember_models() -> None:
    """Keep a handle on the model `train` builds (it saves nothing when stopped early)."""
    import harness.train.loop as loop

    original = loop._prepare_model

    def remember(config: VariantConfig) -> Embedder:
        _LAST_MODEL["model"] = original(config)
        return _LAST_MODEL["model"]

    loop._prepare_model = remember  # type: ignore[assignment]


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in _LAST_MODEL["model"].state_dict().items()}


@pytest.mark.slow
@pytest.mark.precision
def test_two_gloo_processes_equal_one_process_over_the_global_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.train.loop as loop

    monkeypatch.setattr(loop, "_prepare_model", loop._prepare_model)  # restored after the test
    _remember_models()
    run_ranks(_ddp_worker, (2, _free_port(), str(tmp_path), os.environ["HARNESS_CACHE"]))
    ddp = torch.load(tmp_path / "ddp.pt")

    config = _tiny_config(steps=1, batch_size=8, warmup_ratio=0.0, bf16=False)  # same global batch, one process (float32: numbers compared)
    rows, _ = build_mix(config.data)
    log, _ = train(config, rows, tmp_path / "single", show_progress=False, stop_after=1)
    single = {k: v.clone() for k, v in _LAST_MODEL["model"].state_dict().items()}
    assert log[0]["loss"] == pytest.approx(ddp["loss"], rel=1e-4)
    for name, value in single.items():
        torch.testing.assert_close(ddp["state"][name], value, atol=2e-6, rtol=1e-4, msg=name)
    base = Embedder.from_config(config.model).state_dict()
    assert any(not torch.equal(base[k], single[k]) for k in single)  # the step really moved the weights


@pytest.mark.slow
def test_killed_training_resumes_to_the_same_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    config = _tiny_config(steps=24, checkpoint_every=3, batch_size=4)
    cfg_path = write(tmp_path / "variant.yaml", json.dumps(config.to_dict()))
    env = {**os.environ, "HARNESS_CACHE": str(tmp_path / "cache-killed"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "harness", "train", str(cfg_path), "--no-progress"]

    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    partial = None
    while time.time() < deadline and proc.poll() is None:
        found = list((tmp_path / "cache-killed" / "train").glob("*.partial/step-*/state.pt"))
        if found:
            partial = found[0]
            break
        time.sleep(0.05)
    assert partial is not None, "no checkpoint appeared before the run ended"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    names = [p.name for p in (tmp_path / "cache-killed" / "train").iterdir()]
    assert not any(len(n) == 12 and "." not in n for n in names), f"a killed run left a finished-looking stage: {names}"

    # the same command again, in this process: it resumes from what the killed process left on disk
    from harness.cli import main

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache-killed"))
    capsys.readouterr()
    assert main(cmd[3:]) == 0
    resumed = capsys.readouterr().out
    assert "'resumed_from': 0" not in resumed and "'resumed_from': " in resumed, resumed
    leftovers = [p.name for p in (tmp_path / "cache-killed" / "train").iterdir()]
    assert len(leftovers) == 1, f"checkpoints and temp folders are cleaned up after success: {leftovers}"
    # the uninterrupted reference, in this process too, in a cache of its own
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache-clean"))
    assert main(cmd[3:]) == 0

    from safetensors.torch import load_file

    def weights(cache: str) -> dict[str, torch.Tensor]:
        (folder,) = [p for p in (tmp_path / cache / "train").iterdir() if not p.name.endswith(".partial")]
        return load_file(folder / "model" / "model.safetensors")

    a, b = weights("cache-killed"), weights("cache-clean")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=0, rtol=0, msg=name)


@pytest.mark.slow
def test_lora_trains_only_adapters_and_exports_a_merged_model(tmp_path: Path) -> None:
    pytest.importorskip("peft")
    from sentence_transformers import SentenceTransformer

    config = _tiny_config(steps=2, lora={"r": 4, "alpha": 8, "targets": ["q_proj", "v_proj"]})
    rows, _ = build_mix(config.data)
    import harness.train.loop as loop

    model = loop._prepare_model(config)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    log, summary = train(config, rows, tmp_path / "model", show_progress=False)
    assert summary["steps"] == 2 and len(log) == 2
    merged = Embedder.from_config(config.model, checkpoint=tmp_path / "model")
    assert not any("lora" in n for n, _ in merged.named_parameters())
    base = Embedder.from_config(config.model)
    texts = ["a query about sorting lists", "def sort(xs): return sorted(xs)"]
    ours = merged.encode(texts, max_length=32)
    assert not np.allclose(ours, base.encode(texts, max_length=32))  # the adapters changed the model
    st = SentenceTransformer(str(tmp_path / "model"), device="cpu").encode(texts)
    np.testing.assert_allclose(ours, st, atol=1e-5)


@pytest.mark.slow
def test_gradient_accumulation_counts_micro_batches(tmp_path: Path) -> None:
    config = _tiny_config(steps=2, batch_size=4, gradient_accumulation=3)
    rows, _ = build_mix(config.data)
    import harness.train.loop as loop

    batches = loop.micro_batches(rows, config, loop.World(), 2 * 3)
    assert len(batches) == 6 and all(len(b) == 4 for b in batches)
    assert len({i for b in batches for i in b}) == 24  # six different micro-batches, no repeats in an epoch
    log, summary = train(config, rows, tmp_path / "m", show_progress=False, stop_after=2)
    assert [e["step"] for e in log] == [1, 2] and all(np.isfinite(e["loss"]) for e in log)
