"""The loss's Matryoshka / focal terms (harness.train.loss.LossTerms) in the log and the trackers.

The terms must change nothing that trains: the total and its gradients are compared bit for bit
with the loss written out here the way it was computed before terms existed (`_reference`), and a
tiny training run with the terms is compared weight for weight with one whose loss is that
reference. Then: the terms sum to the total, reach `train_log.jsonl` and TensorBoard at each logged
step, average across two gloo ranks like the loss, and a loss without options logs no term.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness.config import TrainConfig, VariantConfig
from harness.train.distributed import World, mean_over_ranks, means_over_ranks
from harness.train.loss import (
    LossTerms,
    Mixing,
    draw_mixing,
    loss_terms,
    matryoshka_info_nce,
    own_negatives,
)
from harness.train.step import TrainStep

from .conftest import run_ranks
from .test_trackers import _train
from .test_train import _free_port

TAU = 0.05
DIMS, WEIGHTS = [16, 8, 4], [1.0, 0.3, 0.1]


def _embeddings(rows: int = 6, per_row: int = 4, dim: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(rows, dim, generator=g), dim=-1)
    p = F.normalize(torch.randn(rows * per_row, dim, generator=g), dim=-1)
    return q, p, torch.arange(rows) * per_row


def _one(q: torch.Tensor, p: torch.Tensor, t: torch.Tensor, tau: float, gamma: float,
         mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One prefix's (loss, plain InfoNCE) with the operations of the loss before it had terms."""
    logits = q @ p.T / tau
    if mask is not None:
        logits = logits.masked_fill(~mask.unsqueeze(0), torch.finfo(logits.dtype).min)
    if not gamma:
        plain = F.cross_entropy(logits, t)
        return plain, plain
    per_row = F.cross_entropy(logits, t, reduction="none")
    weight = (-torch.expm1(-per_row)).clamp_min(torch.finfo(per_row.dtype).tiny).pow(gamma)
    return (weight * per_row).mean(), per_row.mean()


def _reference(q: torch.Tensor, p: torch.Tensor, t: torch.Tensor, tau: float, dims: Sequence[int] | None,
               weights: Sequence[float] | None, mask: torch.Tensor | None = None,
               gamma: float = 0.0) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """(total, weight-free term per dim, Σ w_d · plain InfoNCE_d), no mixing."""
    if not dims:
        loss, plain = _one(q, p, t, tau, gamma, mask)
        return loss, {}, plain
    weights = weights or [1.0] * len(dims)
    total, plain_sum, per_dim = q.new_zeros(()), q.new_zeros(()), {}
    for dim, w in zip(dims, weights, strict=True):
        loss, plain = _one(F.normalize(q[:, :dim], dim=-1), F.normalize(p[:, :dim], dim=-1), t, tau, gamma, mask)
        total = total + w * loss
        plain_sum = plain_sum + w * plain.detach()
        per_dim[f"mrl_{dim}"] = loss.detach()
    return total, per_dim, plain_sum


CASES = {
    "plain": {"dims": None, "weights": None, "gamma": 0.0},
    "focal": {"dims": None, "weights": None, "gamma": 2.0},
    "matryoshka": {"dims": DIMS, "weights": WEIGHTS, "gamma": 0.0},
    "matryoshka-unweighted": {"dims": DIMS, "weights": None, "gamma": 0.0},
    "focal-matryoshka": {"dims": DIMS, "weights": WEIGHTS, "gamma": 0.5},
}


@pytest.mark.parametrize("case", list(CASES))
def test_total_and_gradients_are_the_loss_without_terms_bit_for_bit(case: str) -> None:
    dims, weights, gamma = CASES[case]["dims"], CASES[case]["weights"], CASES[case]["gamma"]
    q, p, t = _embeddings()
    mask = torch.ones(len(p), dtype=torch.bool)
    mask[-2:] = False  # the padding equal-size gathering adds
    grads = {}
    for name in ("terms", "reference"):
        qq, pp = q.clone().requires_grad_(), p.clone().requires_grad_()
        if name == "terms":
            out = loss_terms(qq, pp, t, TAU, dims, weights, mask, focal_gamma=gamma)
            total, parts = out.total, out.parts
        else:
            total, per_dim, plain = _reference(qq, pp, t, TAU, dims, weights, mask, gamma)
        total.backward()
        grads[name] = (total.detach(), qq.grad, pp.grad)
    for got, want in zip(grads["terms"], grads["reference"], strict=True):
        assert torch.equal(got, want), case
    # the terms are the reference's per-prefix and plain values, and nothing else
    expected = set(per_dim) | ({"infonce", "focal"} if gamma else set())
    assert set(parts) == expected, case
    for key, value in per_dim.items():
        assert torch.equal(parts[key], value), (case, key)
    if gamma:
        assert torch.equal(parts["focal"], grads["terms"][0])
        torch.testing.assert_close(parts["infonce"], plain)
        assert parts["infonce"] > parts["focal"]  # (1 - p)^γ < 1 only shrinks rows
    if dims:
        w = weights or [1.0] * len(dims)
        torch.testing.assert_close(sum(wd * parts[f"mrl_{d}"] for d, wd in zip(dims, w, strict=True)), total.detach())
    assert all(not v.requires_grad for v in parts.values())
    assert torch.equal(matryoshka_info_nce(q, p, t, TAU, dims, weights, mask, focal_gamma=gamma), grads["terms"][0])


def test_terms_under_hard_negative_mixing_still_sum_to_the_total() -> None:
    q, p, t = _embeddings(seed=4)
    mixing = Mixing(own_negatives(t.tolist(), len(p)), draw_mixing(7, 2, len(q), 3), hardest=3)
    out = loss_terms(q, p, t, TAU, DIMS, WEIGHTS, focal_gamma=1.0, mixing=mixing)
    torch.testing.assert_close(sum(w * out.parts[f"mrl_{d}"] for d, w in zip(DIMS, WEIGHTS, strict=True)), out.total)
    assert torch.equal(out.parts["focal"], out.total)
    # mixing added negatives: every prefix's term is larger than without them
    without = loss_terms(q, p, t, TAU, DIMS, WEIGHTS, focal_gamma=1.0)
    assert all(out.parts[k] > without.parts[k] for k in without.parts)


# ----------------------------------------------------------------------------- two gloo ranks

CONFIG = {"temperature": TAU, "focal_gamma": 0.5, "matryoshka": {"dims": DIMS, "weights": WEIGHTS}}


def _step(world: World) -> TrainStep:
    tc = TrainConfig.model_validate(CONFIG)
    return TrainStep(None, [], None, None, tc, world, bf16=False, lengths=(8, 8))  # type: ignore[arg-type]


def _terms_worker(rank: int, world_size: int, port: int, out: str) -> None:
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    from harness.train.distributed import init_from_env

    world = init_from_env()
    q, p, _ = _embeddings(rows=8, seed=9)
    rows = 8 // world_size
    step = _step(world)
    loss = step.loss(q[rank * rows:(rank + 1) * rows], p[rank * rows * 4:(rank + 1) * rows * 4],
                     [i * 4 for i in range(rows)])
    result = {"terms": means_over_ranks(step.last_terms, world), "loss": mean_over_ranks(float(loss), world)}
    torch.save(result, Path(out) / f"rank{rank}.pt")
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_terms_average_over_two_gloo_ranks_like_the_loss(tmp_path: Path) -> None:
    """Each rank's terms are means over its rows; their mean over ranks is the one-process value,
    as for the loss, and every rank gets the same numbers."""
    run_ranks(_terms_worker, (2, _free_port(), str(tmp_path)))
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    q, p, t = _embeddings(rows=8, seed=9)
    single = _step(World())
    total = single.loss(q, p, t.tolist())
    assert ranks[0] == ranks[1]
    assert set(ranks[0]["terms"]) == {"mrl_16", "mrl_8", "mrl_4", "infonce", "focal"}
    for key, value in single.last_terms.items():
        assert ranks[0]["terms"][key] == pytest.approx(float(value), rel=1e-5), key
    assert ranks[0]["loss"] == pytest.approx(float(total), rel=1e-5)
    assert ranks[0]["terms"]["focal"] == pytest.approx(ranks[0]["loss"], rel=1e-6)


# ----------------------------------------------------------------------------- training runs

TERMS = {"loss/mrl_64", "loss/mrl_32", "loss/mrl_16", "loss/infonce", "loss/focal"}


def _config(train: dict) -> VariantConfig:
    return VariantConfig.model_validate({
        "model": {"backbone": "tiny-qwen2", "query_max_length": 24, "passage_max_length": 48},
        "data": {"total_rows": 32, "sources": {"cldr-bitext": {"langs": ["yo", "am"]}}},
        "train": {"batch_size": 4, "steps": 3, "lr": 1e-3, "log_every": 2, "bf16": False, **train},
    })


BOTH = {"matryoshka": {"dims": [64, 32, 16], "weights": [1.0, 0.3, 0.1]}, "focal_gamma": 2.0,
        "gradient_accumulation": 2}




def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.mark.slow
def test_matryoshka_and_focal_terms_in_the_local_log_and_tensorboard(tmp_path: Path, tracking: Path) -> None:
    log = _train(_config({**BOTH, "report_to": ["tensorboard"]}), tmp_path / "m")
    assert [e["step"] for e in log] == [2, 3]  # every log_every steps and the last
    for entry in log:
        assert TERMS <= set(entry) and not {k for k in entry if k.startswith("loss/")} - TERMS
        weighted = entry["loss/mrl_64"] + 0.3 * entry["loss/mrl_32"] + 0.1 * entry["loss/mrl_16"]
        assert weighted == pytest.approx(entry["loss"], abs=3e-6)  # each value is rounded to 6 places
        assert entry["loss/focal"] == pytest.approx(entry["loss"], abs=2e-6)
        assert entry["loss/infonce"] > entry["loss/focal"] > 0
    scalars = _scalars(tracking / "tensorboard" / "tiny" / "base" / "seed-0")
    for key in TERMS | {"loss"}:
        got = scalars[f"train/{key}"]
        assert [s for s, _ in got] == [2, 3], key
        assert np.allclose([v for _, v in got], [e[key] for e in log], atol=1e-5), key


@pytest.mark.slow
@pytest.mark.parametrize("options, terms", [({}, set()), ({"focal_gamma": 1.0}, {"loss/infonce", "loss/focal"}),
                                            ({"matryoshka": {"dims": [64, 8]}}, {"loss/mrl_64", "loss/mrl_8"})])
def test_only_the_terms_the_loss_has_are_logged(tmp_path: Path, tracking: Path, options: dict, terms: set) -> None:
    log = _train(_config({**options, "report_to": ["tensorboard"]}), tmp_path / "m")
    for entry in log:
        assert {k for k in entry if k.startswith("loss/")} == terms
        if "loss/mrl_64" in terms:  # no weights: each prefix weighs 1
            assert entry["loss/mrl_64"] + entry["loss/mrl_8"] == pytest.approx(entry["loss"], abs=3e-6)
    tags = set(_scalars(tracking / "tensorboard" / "tiny" / "base" / "seed-0"))
    assert {t for t in tags if t.startswith("train/loss/")} == {f"train/{k}" for k in terms}
    assert "train/loss" in tags


@pytest.mark.slow
def test_training_with_terms_trains_what_the_loss_without_them_trained(tmp_path: Path, tracking: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The same fixed-seed run twice: as the harness runs it, and with the step's loss swapped for
    `_reference` (the loss as computed before it had terms). Weights and logged losses are equal
    bit for bit; only the first log has terms."""
    from safetensors.torch import load_file

    import harness.train.step as step_module

    config = _config(BOTH)
    with_terms = _train(config, tmp_path / "terms")

    def reference_terms(q, p, t, tau, dims, weights, mask, *, focal_gamma, mixing):  # type: ignore[no-untyped-def]
        assert mixing is None
        return LossTerms(_reference(q, p, t, tau, dims, weights, mask, focal_gamma)[0], {})

    monkeypatch.setattr(step_module, "loss_terms", reference_terms)
    without = _train(config, tmp_path / "reference")
    assert [e["loss"] for e in with_terms] == [e["loss"] for e in without]
    assert [e["grad_norm"] for e in with_terms] == [e["grad_norm"] for e in without]
    assert not any(k.startswith("loss/") for e in without for k in e)
    files = sorted(f.name for f in (tmp_path / "terms").rglob("*.safetensors"))
    assert files
    for name in files:
        a, b = load_file(next((tmp_path / "terms").rglob(name))), load_file(next((tmp_path / "reference").rglob(name)))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


# ----------------------------------------------------------------------------- the report's curves


def _write_logs(recipe_dir: Path, with_terms: bool) -> None:
    import json

    for variant in ("base", "mrl"):
        for seed in (0, 1):
            entries = []
            for step in (1, 2, 3):
                e = {"step": step, "loss": 2.0 / step + seed * 0.01, "lr": 1e-3, "examples_per_second": 10.0}
                if with_terms and variant == "mrl":
                    e |= {"loss/mrl_64": 1.5 / step, "loss/mrl_8": 2.5 / step, "loss/infonce": 2.2 / step,
                          "loss/focal": e["loss"]}
                entries.append(e)
            folder = recipe_dir / variant / f"seed-{seed}"
            folder.mkdir(parents=True)
            (folder / "train_log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))


@pytest.mark.parametrize("with_terms", [True, False])
def test_curves_draw_the_terms_only_when_a_log_has_them(tmp_path: Path, with_terms: bool) -> None:
    from harness.report.curves import FIGURE, curves_markdown, load_logs, term_columns

    _write_logs(tmp_path, with_terms)
    logs = load_logs(tmp_path)
    assert term_columns(logs) == (["loss/mrl_64", "loss/mrl_8", "loss/infonce"] if with_terms else [])
    if with_terms:  # the arm without terms has none; the other's values are read as written
        assert logs[logs["variant"] == "base"]["loss/mrl_64"].isna().all()
        assert logs[(logs["variant"] == "mrl") & (logs["step"] == 2)]["loss/mrl_8"].tolist() == [1.25, 1.25]
    lines = curves_markdown(tmp_path)
    assert (tmp_path / "plots" / FIGURE).stat().st_size > 1000
    assert any("Matryoshka prefix" in line for line in lines) == with_terms


def test_a_repeated_matryoshka_size_is_one_error_naming_it() -> None:
    from pydantic import ValidationError

    from harness.config import MatryoshkaConfig

    with pytest.raises(ValidationError, match=r"repeats \[64\]"):
        MatryoshkaConfig(dims=[64, 32, 64])
    assert MatryoshkaConfig(dims=[64, 32]).dims == [64, 32]
