"""Compute estimates: token and FLOP counts against a hand computation, and the calibrated time
against the actual training time on this machine (both measured in the same test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import VariantConfig
from harness.data.rows import TrainRow
from harness.estimates import calibrated_rate, estimate, padded_lengths, parameter_count
from harness.lengths import load_tokenizer, training_lengths

from .conftest import private_machine_cache, run_ranks


def _config(**train: object) -> VariantConfig:
    return VariantConfig.model_validate({
        "model": {"backbone": "tiny-qwen2", "instructions": False, "query_max_length": 8, "passage_max_length": 16},
        "data": {"hard_negatives": 1, "sources": {"a": {"kind": "stdlib-code", "weight": 1.0},
                                                  "b": {"kind": "cldr-bitext", "weight": 3.0}}},
        "train": {"steps": 5, "batch_size": 4, "gradient_accumulation": 2, "bf16": False, **train},
    })


def test_tokens_and_flops_by_hand() -> None:
    import torch
    from transformers import AutoModel

    from harness.backbones import resolve_path

    config = _config()
    tokenizer = load_tokenizer("tiny-qwen2")
    queries = {"a": "find the function that parses dates from strings quickly", "b": "hello"}
    passages = {"a": "short doc", "b": "def parse(text): return datetime.strptime(text, '%Y') " * 3}
    rows = [TrainRow(query=queries[s], pos=[passages[s]], neg=[passages[s]], source=s) for s in ("a", "b")]
    lengths = {"training": training_lengths(config, rows), "eval": {}}

    def seen(text: str, limit: int) -> int:
        return min(len(tokenizer(text)["input_ids"]), limit)

    # the mix's measured rows are 1 and 1, so the shares are the measured rows (1:1), not the weights
    q = (seen(queries["a"], 8) + seen(queries["b"], 8)) / 2
    p = (seen(passages["a"], 16) + seen(passages["b"], 16)) / 2
    examples = 5 * 2 * 4  # steps x accumulation x batch
    tokens = examples * (q + 2 * p)  # a query, a positive and one hard negative
    e = estimate(config, lengths, negatives_per_row=1.0)
    assert e.examples == examples and e.texts_per_example == 3
    assert e.train_tokens == pytest.approx(tokens)
    model = AutoModel.from_pretrained(resolve_path("tiny-qwen2"), dtype=torch.float32)
    n = sum(t.numel() for t in model.parameters())
    assert parameter_count("tiny-qwen2") == n
    assert e.train_flops == pytest.approx(6 * n * tokens)
    lora = estimate(_config(lora={"r": 4}), lengths, negatives_per_row=1.0)
    assert lora.train_flops == pytest.approx(4 * n * tokens)
    epochs = _config(steps=None, epochs=2.0)
    assert estimate(epochs, lengths, rows=30, negatives_per_row=1.0).examples == 60


@pytest.mark.slow
@pytest.mark.timing  # run alone (.ci/run: -m timing -n 0): beside parallel tests, their load decides the ratio
def test_calibrated_time_within_2x_of_the_actual_run(tmp_path) -> None:  # noqa: ANN001
    """A fresh probe, then the run it predicts, on this machine. A shared machine's other tenants
    can slow either side for a few seconds, so the pair is measured up to three times and one pair
    within 2x passes; every ratio is in the message."""
    from harness.data.mix import build_mix
    from harness.estimates import measure_throughput
    from harness.train.loop import train

    config = VariantConfig.model_validate({
        "model": {"backbone": "tiny-qwen2", "query_max_length": 24, "passage_max_length": 48},
        "data": {"total_rows": 96, "hard_negatives": 0, "sources": {"stdlib-code": {}, "cldr-bitext": {"langs": ["yo"]}}},
        "train": {"steps": 12, "batch_size": 8, "lr": 1e-3, "bf16": False, "log_every": 4},
    })
    rows, _ = build_mix(config.data)
    lengths = {"training": training_lengths(config, rows), "eval": {}}
    measured = []
    for attempt in range(3):
        probe = measure_throughput(config, *padded_lengths(config, lengths), 0)  # not the machine cache's
        rate, warmup = calibrated_rate(config, lengths, 0.0, probe=probe)
        e = estimate(config, lengths, negatives_per_row=0.0, tokens_per_second=rate, warmup_seconds=warmup)
        _, summary = train(config, rows, tmp_path / f"m{attempt}", show_progress=False)
        measured.append((summary["train_seconds"], e.train_seconds))
        if 0.5 <= summary["train_seconds"] / e.train_seconds <= 2.0:
            return
    pytest.fail(f"(actual s, estimated s) of 3 attempts: {measured}")


@pytest.mark.slow
def test_a_throughput_is_measured_once_per_machine_and_shape(monkeypatch, tmp_path) -> None:  # noqa: ANN001
    """The probe's real steps run once; the same model shape and lengths read the machine cache after,
    another shape is measured anew."""
    from harness import estimates

    private_machine_cache(tmp_path / "machine", monkeypatch)
    config = VariantConfig.model_validate({"model": {"backbone": "tiny-qwen2"},
                                           "train": {"batch_size": 4, "bf16": False}})
    rate, warmup = estimates.calibrate(config, 12.0, 24.0, 1)  # real steps of tiny-qwen2
    assert rate > 0 and warmup >= 0
    assert len(list((tmp_path / "machine" / "throughput").glob("*.json"))) == 1

    def measured_again(*args):  # noqa: ANN002, ANN202
        raise AssertionError("the cached throughput was measured again")

    monkeypatch.setattr(estimates, "measure_throughput", measured_again)
    assert estimates.calibrate(config, 12.0, 24.0, 1) == (rate, warmup)
    other = config.model_copy(deep=True)
    other.train.batch_size = 8
    with pytest.raises(AssertionError, match="measured again"):
        estimates.calibrate(other, 12.0, 24.0, 1)


def _calibrate_in_a_rank(rank: int, config_json: str, start: object, measured_log: str) -> None:
    """One of two processes that ask for the same probe at once; logs each real measurement."""
    from harness import estimates

    real = estimates.measure_throughput

    def counted(*args):  # noqa: ANN002, ANN202
        with open(measured_log, "a", encoding="utf-8") as log:
            log.write(f"rank {rank}\n")
        return real(*args)

    estimates.measure_throughput = counted
    start.wait()  # type: ignore[attr-defined]
    rate, warmup = estimates.calibrate(VariantConfig.model_validate_json(config_json), 12.0, 24.0, 1)
    Path(measured_log).with_suffix(f".{rank}").write_text(f"{rate} {warmup}")


@pytest.mark.slow
def test_two_processes_asking_for_one_probe_at_once_measure_it_once(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Two ablates starting together on one machine: the second waits for the first's probe and
    reads it, instead of running the steps too (and halving what both measure)."""
    import multiprocessing

    private_machine_cache(tmp_path / "machine", monkeypatch)
    config = VariantConfig.model_validate({"model": {"backbone": "tiny-qwen2"},
                                           "train": {"batch_size": 4, "bf16": False}})
    start, log = multiprocessing.get_context("fork").Barrier(2), tmp_path / "measured.log"
    run_ranks(_calibrate_in_a_rank, (config.model_dump_json(), start, str(log)))  # two forked processes
    assert len(log.read_text().splitlines()) == 1, log.read_text()  # one process measured
    assert log.with_suffix(".0").read_text() == log.with_suffix(".1").read_text()  # both have its numbers
    assert not list((tmp_path / "machine" / "throughput").glob("*.lock"))  # no lock left behind
