"""KaLM-Embedding-V2's loss options against computations written here from their definitions:
focal-style re-weighting (γ = 0 is today's loss; gradients equal a direct implementation and the
closed form; Matryoshka; two gloo ranks) and online hard-negative mixing (shapes, seeded draws,
0 synthetic negatives = today's loss, a hand-computed synthetic logit, two gloo ranks)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from harness.config import TrainConfig, VariantConfig
from harness.errors import HarnessError
from harness.recipe import load_recipe
from harness.train.distributed import World
from harness.train.loss import (
    Mixing,
    MixingDraw,
    draw_mixing,
    info_nce,
    matryoshka_info_nce,
    own_negatives,
    synthetic_negatives,
)
from harness.train.step import TrainStep

from .conftest import run_ranks, write
from .test_train import _free_port

TAU = 0.05


def _embeddings(rows: int = 6, per_row: int = 4, dim: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Unit queries, and per row one positive followed by per_row - 1 hard negatives."""
    g = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(rows, dim, generator=g), dim=-1)
    p = F.normalize(torch.randn(rows * per_row, dim, generator=g), dim=-1)
    return q, p, [i * per_row for i in range(rows)]


def _direct_focal(logits: torch.Tensor, targets: torch.Tensor, gamma: float) -> torch.Tensor:
    """E_i[-(1 - p_i)^γ log p_i], p_i = softmax(logits_i)[target_i], written out."""
    prob = torch.exp(logits - logits.logsumexp(dim=1, keepdim=True))
    p_pos = prob[torch.arange(len(targets)), targets]
    return (-(1 - p_pos) ** gamma * torch.log(p_pos)).mean()


# ----------------------------------------------------------------------------- focal


def test_focal_gamma_zero_is_todays_loss_exactly() -> None:
    q, p, targets = _embeddings()
    t = torch.tensor(targets)
    today = F.cross_entropy(q @ p.T / TAU, t)
    assert torch.equal(info_nce(q, p, t, TAU, focal_gamma=0.0), today)
    # the re-weighted path itself also reduces to plain InfoNCE at γ = 0
    assert torch.allclose(info_nce(q, p, t, TAU, focal_gamma=1e-12), today, rtol=1e-6, atol=0)


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
def test_focal_gradient_equals_the_direct_implementation_and_the_closed_form(gamma: float) -> None:
    # Fixed logits: queries are logits x τ against identity passages, so q @ p.T / τ is the logits.
    logits = torch.tensor([[2.0, 0.5, -1.0, 0.0], [0.1, 0.3, 0.2, -0.4], [-2.0, 1.5, 0.0, 3.0]], dtype=torch.float64)
    targets = torch.tensor([0, 2, 1])
    q = (logits * TAU).clone().requires_grad_()
    loss = info_nce(q, torch.eye(4, dtype=torch.float64), targets, TAU, focal_gamma=gamma)
    loss.backward()
    ours = q.grad * TAU  # d loss / d logits

    z = logits.clone().requires_grad_()
    direct = _direct_focal(z, targets, gamma)
    direct.backward()
    torch.testing.assert_close(loss.detach(), direct.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours, z.grad, rtol=1e-10, atol=1e-12)

    # closed form: dL/dz_k = (softmax_k - [k = t]) * ((1-p)^γ + γ p (1-p)^(γ-1) (-log p)) / N
    soft = torch.softmax(logits, dim=1)
    p_pos = soft[torch.arange(3), targets]
    factor = (1 - p_pos) ** gamma + gamma * p_pos * (1 - p_pos) ** (gamma - 1) * -torch.log(p_pos)
    closed = (soft - F.one_hot(targets, 4)) * factor.unsqueeze(1) / 3
    torch.testing.assert_close(ours, closed, rtol=1e-10, atol=1e-12)


def test_focal_down_weights_easy_rows() -> None:
    logits = torch.tensor([[8.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    q = logits * TAU
    plain = F.cross_entropy(logits, torch.tensor([0, 0]), reduction="none")
    focal = info_nce(q, torch.eye(3), torch.tensor([0, 0]), TAU, focal_gamma=2.0)
    p = torch.exp(-plain)
    assert focal.item() == pytest.approx(float(((1 - p) ** 2 * plain).mean()), rel=1e-6)
    assert ((1 - p[0]) ** 2 / (1 - p[1]) ** 2).item() < 1e-5  # the easy row barely counts


def test_focal_stays_finite_when_a_positive_probability_rounds_to_one() -> None:
    q = torch.tensor([[60.0, 0.0], [0.0, 1.0]]).mul(TAU).requires_grad_()
    loss = info_nce(q, torch.eye(2), torch.tensor([0, 1]), TAU, focal_gamma=0.5)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(q.grad).all()


def test_focal_under_matryoshka_reweights_every_prefix_by_its_own_probability() -> None:
    q, p, targets = _embeddings(dim=16)
    dims, weights, gamma = [16, 8, 4], [1.0, 0.3, 0.1], 1.5
    q1, p1 = q.clone().requires_grad_(), p.clone().requires_grad_()
    ours = matryoshka_info_nce(q1, p1, torch.tensor(targets), TAU, dims, weights, focal_gamma=gamma)
    ours.backward()
    q2, p2 = q.clone().requires_grad_(), p.clone().requires_grad_()
    direct = sum(w * _direct_focal(F.normalize(q2[:, :d], dim=-1) @ F.normalize(p2[:, :d], dim=-1).T / TAU,
                                   torch.tensor(targets), gamma) for d, w in zip(dims, weights, strict=True))
    direct.backward()
    torch.testing.assert_close(ours, direct)
    torch.testing.assert_close(q1.grad, q2.grad)
    torch.testing.assert_close(p1.grad, p2.grad)


# ----------------------------------------------------------------------------- mixing


def test_own_negatives_are_the_passages_between_positives() -> None:
    index = own_negatives([0, 3, 4, 7], n_passages=9, offset=100)
    assert index.tolist() == [[101, 102], [-1, -1], [105, 106], [108, -1]]
    assert own_negatives([0, 1], 2).shape == (2, 0)


def test_mixing_draw_is_seeded_and_rank_slices_are_the_global_draw() -> None:
    a = draw_mixing(7, 3, rows=8, count=4)
    b = draw_mixing(7, 3, rows=8, count=4)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.first, b.first)
    assert not torch.equal(draw_mixing(7, 4, rows=8, count=4).weight, a.weight)  # another step
    assert not torch.equal(draw_mixing(8, 3, rows=8, count=4).weight, a.weight)  # another seed
    upper = draw_mixing(7, 3, rows=4, count=4, first_row=4, global_rows=8)
    assert torch.equal(upper.weight, a.weight[4:]) and torch.equal(upper.second, a.second[4:])
    assert a.weight.shape == (8, 4) and a.weight.dtype == torch.float32
    assert ((a.weight > 0) & (a.weight < 1)).all()
    squeezed = draw_mixing(7, 3, rows=8, count=4, coefficient=(0.2, 0.4))
    assert ((squeezed.weight >= 0.2) & (squeezed.weight <= 0.4)).all()


def test_zero_synthetic_negatives_is_todays_loss_exactly() -> None:
    q, p, targets = _embeddings()
    t = torch.tensor(targets)
    mixing = Mixing(own_negatives(targets, len(p)), draw_mixing(0, 0, len(targets), 0))
    assert torch.equal(info_nce(q, p, t, TAU, mixing=mixing), F.cross_entropy(q @ p.T / TAU, t))
    assert torch.equal(matryoshka_info_nce(q, p, t, TAU, [16, 8], [1.0, 0.5], mixing=mixing),
                       matryoshka_info_nce(q, p, t, TAU, [16, 8], [1.0, 0.5]))


def test_a_synthetic_logit_is_the_mix_of_two_of_the_rows_hardest_negatives() -> None:
    """One row, three negatives of known similarity; `hardest: 2` must mix exactly the top two."""
    q = torch.tensor([[1.0, 0.0, 0.0]])
    pos = torch.tensor([0.6, 0.8, 0.0])
    negs = F.normalize(torch.tensor([[0.2, 0.0, 1.0], [0.9, 0.1, 0.0], [0.7, -0.5, 0.3]]), dim=-1)
    p = torch.cat([pos.unsqueeze(0), negs])  # similarities to q: 0.196, 0.994, 0.792
    lam = 0.3
    draw = MixingDraw(first=torch.tensor([[0.9]]), second=torch.tensor([[0.1]]), weight=torch.tensor([[lam]]))
    mixing = Mixing(own_negatives([0], 4), draw, hardest=2)
    got = info_nce(q, p, torch.tensor([0]), TAU, mixing=mixing)
    # pool = negatives 1 (0.994) and 2 (0.792), hardest first; first=0.9 -> j = 1 (neg 2), then k = the other
    synthetic = F.normalize(lam * negs[2] + (1 - lam) * negs[1], dim=0)
    logits = torch.cat([q @ p.T, (q @ synthetic).reshape(1, 1)], dim=1) / TAU
    torch.testing.assert_close(got, F.cross_entropy(logits, torch.tensor([0])))


def test_synthetic_negatives_enter_only_their_own_row_and_need_two_negatives() -> None:
    q, p, _ = _embeddings(rows=4, per_row=3)
    p = p[:11]
    targets = [0, 4, 5, 8]  # row 0 has three negatives, row 1 none, rows 2 and 3 two each
    t = torch.tensor(targets)
    mixing = Mixing(own_negatives(targets, len(p)), draw_mixing(3, 0, 4, 5))
    negatives = p[mixing.negatives.clamp_min(0)]
    synthetic, valid = synthetic_negatives(q, negatives, mixing.negatives >= 0, mixing)
    assert synthetic.shape == (4, 5, 16) and valid.shape == (4, 5)
    assert valid.tolist() == [[True] * 5, [False] * 5, [True] * 5, [True] * 5]
    torch.testing.assert_close(synthetic.norm(dim=-1), torch.ones(4, 5))
    per_row_plain = F.cross_entropy(q @ p.T / TAU, t, reduction="none")
    per_row_mixed = torch.stack([info_nce(q[i:i + 1], p, t[i:i + 1], TAU,
                                          mixing=Mixing(mixing.negatives[i:i + 1], MixingDraw(
                                              mixing.draw.first[i:i + 1], mixing.draw.second[i:i + 1],
                                              mixing.draw.weight[i:i + 1]))) for i in range(4)])
    # no pair to mix: unchanged (to float32 rounding: a 1-row and a 4-row matmul may take different
    # CPU kernels, AMX / AVX512 / AVX2, and so sum in another order)
    torch.testing.assert_close(per_row_mixed[1], per_row_plain[1], rtol=1e-6, atol=0)
    assert (per_row_mixed[[0, 2, 3]] > per_row_plain[[0, 2, 3]]).all()  # more negatives in Z_i
    # the batched loss is the mean of those rows: a row's synthetic negatives reach no other row
    torch.testing.assert_close(info_nce(q, p, t, TAU, mixing=mixing), per_row_mixed.mean())


def test_mixing_gradients_reach_the_mixed_negatives_only_when_not_detached() -> None:
    q, p, targets = _embeddings(rows=2, per_row=4)
    t, draw = torch.tensor(targets), draw_mixing(0, 0, 2, 3)
    grads = {}
    for detach in (True, False):
        leaf = p.clone().requires_grad_()
        info_nce(q, leaf, t, TAU, mixing=Mixing(own_negatives(targets, len(p)), draw, detach=detach)).backward()
        grads[detach] = leaf.grad
    positives = torch.tensor(targets)
    # positives are never mixed: their gradient is the same either way; the negatives' differs
    torch.testing.assert_close(grads[True][positives], grads[False][positives])
    assert not torch.allclose(grads[True], grads[False])


# ----------------------------------------------------------------------------- config


def test_mixing_needs_pairs_of_hard_negatives(tmp_path: Path) -> None:
    recipe = write(tmp_path / "r.yaml", """
base:
  data: {hard_negatives: 1, sources: {stdlib-code: {}}}
  train: {hard_negative_mixing: {synthetic: 2}}
""")
    with pytest.raises(HarnessError, match=r"r\.yaml.*hard_negative_mixing.*data\.hard_negatives >= 2"):
        load_recipe(recipe)
    bad = write(tmp_path / "b.yaml", """
base:
  data: {hard_negatives: 3, sources: {stdlib-code: {}}}
  train: {hard_negative_mixing: {coefficient: [0.6, 0.2]}}
""")
    with pytest.raises(HarnessError, match=r"coefficient.*0 <= lo <= hi <= 1"):
        load_recipe(bad)
    VariantConfig.model_validate({"data": {"hard_negatives": 1}, "train": {"hard_negative_mixing": {"synthetic": 0}}})


# ----------------------------------------------------------------------------- two gloo ranks


def _rank_step(world: World, tc: TrainConfig) -> TrainStep:
    """The training step's loss wiring (gather, targets, each row's negatives, the mixing draw) on
    fixed embeddings: TrainStep.loss touches no model or optimizer."""
    return TrainStep(None, [], None, None, tc, world, bf16=False, lengths=(8, 8))  # type: ignore[arg-type]


ROWS, PER_ROW, DIM, INDEX = 8, 4, 16, 5


def _global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    q, p, _ = _embeddings(rows=ROWS, per_row=PER_ROW, dim=DIM, seed=11)
    return q, p


CONFIGS = {
    "focal": {"focal_gamma": 1.0},
    "focal-matryoshka": {"focal_gamma": 0.5, "matryoshka": {"dims": [16, 8], "weights": [1.0, 0.5]}},
    "mixing": {"hard_negative_mixing": {"synthetic": 3, "hardest": 2, "detach": False}},
    "focal-mixing-matryoshka": {"focal_gamma": 2.0, "hard_negative_mixing": {"synthetic": 2},
                                "matryoshka": {"dims": [16, 4]}},
}


def _config(name: str) -> TrainConfig:
    return TrainConfig.model_validate({"temperature": TAU, "seed": 3, **CONFIGS[name]})


def _loss_worker(rank: int, world_size: int, port: int, out: str) -> None:
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    from harness.train.distributed import init_from_env

    world = init_from_env()
    q_all, p_all = _global_batch()
    rows = ROWS // world_size
    results = {}
    for name in CONFIGS:  # one process group for every configuration: spawning dominates the cost
        q = q_all[rank * rows:(rank + 1) * rows].clone().requires_grad_()
        p = p_all[rank * rows * PER_ROW:(rank + 1) * rows * PER_ROW].clone().requires_grad_()
        loss = _rank_step(world, _config(name)).loss(q, p, [i * PER_ROW for i in range(rows)], INDEX)
        loss.backward()
        results[name] = {"loss": loss.detach(), "q": q.grad, "p": p.grad}
    torch.save(results, Path(out) / f"rank{rank}.pt")
    # Both ranks leave together: a rank tearing gloo down while its peer still talks to it can abort
    # ("terminate called without an active exception", seen once under a loaded full suite).
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_ranks_give_the_one_process_loss_and_gradients(tmp_path: Path) -> None:
    """Each rank's loss is the mean over its rows and gradients are averaged across ranks, so
    (rank0 + rank1) / 2 must be the one-process loss over the global batch, and each rank's
    embedding gradients / 2 the one-process gradients of its slice (passages get both ranks'
    contributions through the gather) — for focal, mixing and both under Matryoshka."""
    run_ranks(_loss_worker, (2, _free_port(), str(tmp_path)))
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    q_all, p_all = _global_batch()
    plain = F.cross_entropy(q_all @ p_all.T / TAU, torch.arange(ROWS) * PER_ROW)
    for name in CONFIGS:
        q, p = q_all.clone().requires_grad_(), p_all.clone().requires_grad_()
        single = _rank_step(World(), _config(name)).loss(q, p, [i * PER_ROW for i in range(ROWS)], INDEX)
        single.backward()
        got = [r[name] for r in ranks]
        torch.testing.assert_close((got[0]["loss"] + got[1]["loss"]) / 2, single.detach(), msg=name)
        torch.testing.assert_close(torch.cat([r["q"] for r in got]) / 2, q.grad, msg=name)
        torch.testing.assert_close(torch.cat([r["p"] for r in got]) / 2, p.grad, msg=name)
        assert not torch.allclose(single.detach(), plain), name  # the options did change the loss


@pytest.mark.slow
def test_training_with_focal_and_mixing_is_seeded_and_differs_from_plain(tmp_path: Path) -> None:
    """Two real train() runs (tiny-qwen2, the offline suite; each row's 2 hard negatives are the next
    rows' positives) with both options give the same losses and weights; the options change the
    losses from plain InfoNCE."""
    from dataclasses import replace

    from harness.data.mix import build_mix
    from harness.train.loop import train

    from .test_train import _tiny_config

    options = {"focal_gamma": 1.0, "hard_negative_mixing": {"synthetic": 2}, "matryoshka": {"dims": [64, 32]}}
    config = _tiny_config(**options)
    rows, _ = build_mix(config.data)
    rows = [replace(r, neg=[rows[(i + 1) % len(rows)].pos[0], rows[(i + 2) % len(rows)].pos[0]])
            for i, r in enumerate(rows)]
    from harness.train.trackers import deterministic_fields

    first, _ = train(config, rows, tmp_path / "a", show_progress=False)
    second, _ = train(config, rows, tmp_path / "b", show_progress=False)
    first, second = ([deterministic_fields(e) for e in log] for log in (first, second))
    assert first == second
    from safetensors.torch import load_file

    weights = [load_file(next((tmp_path / run).glob("*.safetensors"))) for run in ("a", "b")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    plain, _ = train(_tiny_config(matryoshka={"dims": [64, 32]}), rows, tmp_path / "c", show_progress=False)
    assert [e["loss"] for e in plain] != [e["loss"] for e in first]
