"""Compute estimates before a sweep: training tokens, model FLOPs, evaluation texts, and time.

Per run:
- training examples = steps x gradient_accumulation x batch_size x nproc (or epochs x rows);
  each is one query and 1 + hard negatives passages; tokens = examples x (mean query tokens +
  passages x mean passage tokens), lengths *after* truncation, weighted by each source's share of
  the mix (harness/lengths.py measures them with the variant's tokenizer);
- FLOPs: 6·N·T for full fine-tuning (forward 2NT + backward 4NT), 4·N·T with LoRA (the frozen
  backbone still back-propagates activations, 2NT, but computes no weight gradients); evaluation
  is forward only, 2·N·T over every text of every task; N = the backbone's parameters;
- time at a stated throughput: measured here by a short calibration (three real training steps of
  this variant on synthetic texts of the padded lengths, examples/s of the last two), or a
  `--throughput` (training tokens/s on the target hardware) given by the user, printed with its
  source; evaluation is assumed to run 3x the training token rate (forward only).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.report.formatting import duration, si

if TYPE_CHECKING:
    from harness.config import VariantConfig

EVAL_SPEEDUP = 3.0  # forward-only encoding vs a training step, per token (2NT vs 6NT)
CALIBRATION_STEPS = 3


@dataclass(frozen=True)
class Estimate:
    examples: int
    texts_per_example: float
    query_tokens: float  # mean per query, after truncation
    passage_tokens: float
    train_tokens: float
    parameters: int | None
    train_flops: float | None
    flops_form: str
    eval_texts: dict[str, int]
    eval_tokens: float
    eval_flops: float | None
    tokens_per_second: float | None
    warmup_seconds: float  # the first step's extra time (calibrated; 0 with --throughput)
    throughput_source: str
    train_seconds: float | None
    eval_seconds: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@cache
def parameter_count(backbone: str, trust_remote_code: bool = False) -> int | None:
    """Parameters of a backbone from its config alone (built on the meta device: no weights read)."""
    import torch
    from transformers import AutoConfig, AutoModel

    from harness.backbones import resolve_path
    from harness.lengths import tokenizer_spec

    try:
        config = AutoConfig.from_pretrained(resolve_path(tokenizer_spec(backbone)), trust_remote_code=trust_remote_code)
        with torch.device("meta"):
            model = AutoModel.from_config(config, trust_remote_code=trust_remote_code)
    except Exception:  # noqa: BLE001 - a Hub id offline: FLOPs unknown, not an error
        return None
    return int(sum(p.numel() for p in model.parameters()))


def _weighted(training: dict[str, Any], side: str, shares: dict[str, float], padded: bool = False) -> float:
    """Mean tokens per text of a side after truncation, over sources by share; `padded`: the p95
    instead (capped at the limit), what a batch is padded to. Sources not measured (no `side`) are
    left out of the average."""
    training = {s: entry for s, entry in training.items() if side in entry}
    total = sum(shares.get(s, 0.0) for s in training)
    if not total:
        return 0.0

    def value(stats: dict[str, Any]) -> float:
        return float(min(stats["p95"], stats["limit"])) if padded else float(stats["mean_seen"])

    return sum(shares.get(s, 0.0) * value(entry[side]) for s, entry in training.items()) / total


def calibrated_rate(config: VariantConfig, lengths: dict[str, Any], negatives: float,
                    probe: tuple[float, float] | None = None) -> tuple[float, float]:
    """(training tokens/s, warm-up s) here. The probe's texts have the padded lengths (a batch is
    padded to its longest text, about the p95), so its examples/s is what real batches run at;
    the rate is returned per *real* token (mean lengths after truncation).

    `probe`: (tokens/s at padded lengths, warm-up s) already measured for the same model and
    training settings at other lengths (another variant's data): a padded token costs the same
    there, so this variant's rate follows from its own real/padded ratio without new steps."""
    training = lengths.get("training") or {}
    shares = source_shares(config, training)
    passages = 1.0 + negatives
    q, p = _weighted(training, "query", shares), _weighted(training, "passage", shares)
    q_pad, p_pad = padded_lengths(config, lengths)
    rate, warmup = probe or probe_rate(config, lengths, negatives)
    per_example_real, per_example_padded = q + passages * p, q_pad + passages * p_pad
    return rate * per_example_real / per_example_padded if per_example_padded else rate, warmup


def probe_rate(config: VariantConfig, lengths: dict[str, Any], negatives: float) -> tuple[float, float]:
    """The probe behind `calibrated_rate`: (tokens/s at the padded lengths, warm-up s), cached per machine."""
    return calibrate(config, *padded_lengths(config, lengths), round(negatives))


def padded_lengths(config: VariantConfig, lengths: dict[str, Any]) -> tuple[float, float]:
    """(query, passage) tokens a training batch is padded to, weighted by each source's share of the rows."""
    training = lengths.get("training") or {}
    shares = source_shares(config, training)
    return _weighted(training, "query", shares, padded=True), _weighted(training, "passage", shares, padded=True)


def source_shares(config: VariantConfig, training: dict[str, Any]) -> dict[str, float]:
    """Each source's share of the training rows: measured rows when they are the mix, else weights."""
    weights = {n: s.weight for n, s in config.data.sources.items() if s.weight > 0}
    rows = {n: float(e.get("rows", 0)) for n, e in training.items()}
    return rows if sum(rows.values()) and set(rows) <= set(weights) else weights


def training_examples(config: VariantConfig, rows: int | None) -> int:
    tc = config.train
    if tc.steps:
        return tc.steps * tc.gradient_accumulation * tc.batch_size * tc.nproc
    return math.ceil(tc.epochs * (rows if rows is not None else (config.data.total_rows or 0)))


def estimate(config: VariantConfig, lengths: dict[str, Any], *, rows: int | None = None,
             negatives_per_row: float | None = None, tokens_per_second: float | None = None,
             source: str = "none", warmup_seconds: float = 0.0) -> Estimate:
    """The estimate of one run from its measured lengths (harness.lengths) and a throughput."""
    training = lengths.get("training") or {}
    shares = source_shares(config, training)
    negatives = config.data.hard_negatives if negatives_per_row is None else negatives_per_row
    passages = 1.0 + negatives
    query, passage = _weighted(training, "query", shares), _weighted(training, "passage", shares)
    examples = training_examples(config, rows)
    train_tokens = examples * (query + passages * passage)
    n = parameter_count(config.model.backbone, config.model.trust_remote_code)
    lora = config.train.lora is not None
    eval_texts: dict[str, int] = {}
    eval_tokens = 0.0
    for task, entry in (lengths.get("eval") or {}).items():
        sides = {k: v for k, v in entry.items() if isinstance(v, dict)}
        eval_texts[task] = sum(int(v["population"]) for v in sides.values())
        eval_tokens += sum(v["population"] * v["mean_seen"] for v in sides.values())
    train_seconds = warmup_seconds + train_tokens / tokens_per_second if tokens_per_second else None
    eval_seconds = eval_tokens / (EVAL_SPEEDUP * tokens_per_second) if tokens_per_second else None
    return Estimate(examples=examples, texts_per_example=1 + passages, query_tokens=round(query, 1),
                    passage_tokens=round(passage, 1), train_tokens=train_tokens, parameters=n,
                    train_flops=(4 if lora else 6) * n * train_tokens if n else None,
                    flops_form="4·N·T (LoRA: no backbone weight gradients)" if lora else "6·N·T (full fine-tune)",
                    eval_texts=eval_texts, eval_tokens=eval_tokens, eval_flops=2 * n * eval_tokens if n else None,
                    tokens_per_second=tokens_per_second, warmup_seconds=round(warmup_seconds, 3),
                    throughput_source=source,
                    train_seconds=train_seconds, eval_seconds=eval_seconds)


def calibrate(config: VariantConfig, query_tokens: float, passage_tokens: float,
              negatives: int) -> tuple[float, float]:
    """`measure_throughput`, cached per machine (like the bf16 calibration): a throughput is a fact
    of this machine and this model shape, so a rerun, another recipe with the same model and
    lengths, or a test session's next ablate does not pay for the probe steps again."""
    import torch

    from harness import locks
    from harness.devices import cpu_capability, cpu_model
    from harness.hashing import content_hash
    from harness.paths import machine_cache_root

    shape = {"model": config.model.model_dump(mode="json"),
             "train": config.train.model_dump(mode="json", include={"batch_size", "lora", "bf16", "device",
                                                                    "gradient_checkpointing", "grad_cache",
                                                                    "matryoshka", "hard_negative_mixing"}),
             "lengths": [round(query_tokens), round(passage_tokens), negatives],
             "machine": [cpu_model(), cpu_capability(), torch.__version__, torch.cuda.device_count()],
             "steps": CALIBRATION_STEPS, "v": 1}
    path = machine_cache_root() / "throughput" / f"{content_hash(shape)}.json"

    def probe() -> dict[str, float]:
        rate, warmup = measure_throughput(config, query_tokens, passage_tokens, negatives)
        return {"tokens_per_second": rate, "warmup_seconds": warmup}

    found = locks.measure_once(path, probe, numbers=("tokens_per_second", "warmup_seconds"),
                               what="the throughput probe of this model and its settings")
    return float(found["tokens_per_second"]), float(found["warmup_seconds"])


def measure_throughput(config: VariantConfig, query_tokens: float, passage_tokens: float,
                       negatives: int) -> tuple[float, float]:
    """(training tokens/s, warm-up seconds) of this variant on this machine: CALIBRATION_STEPS real
    steps on synthetic rows of the measured lengths; the rate of all but the first step, and how
    much longer the first (warm-up) step took than the others."""
    import tempfile

    from harness.data.rows import TrainRow
    from harness.train.loop import train

    def text(tokens: float, salt: int) -> str:
        return " ".join(f"w{salt % 97}x{i % 13}" for i in range(max(1, round(tokens / 3))))  # ~3 tokens a word

    batch = config.train.batch_size
    rows = [TrainRow(query=text(query_tokens, i), pos=[text(passage_tokens, i + 1)],
                     neg=[text(passage_tokens, i + j + 2) for j in range(negatives)], task=f"t{i % 2}")
            for i in range(batch * (CALIBRATION_STEPS + 1))]
    probe = config.model_copy(deep=True)
    probe.train.steps, probe.train.log_every, probe.train.report_to = CALIBRATION_STEPS, 1, []
    probe.train.gradient_accumulation, probe.train.nproc, probe.train.checkpoint_every = 1, 1, None
    with tempfile.TemporaryDirectory(prefix="harness-calibrate-") as tmp:
        log, _ = train(probe, rows, Path(tmp) / "model", show_progress=False, stop_after=CALIBRATION_STEPS)
    rates = [e["tokens_per_second"] for e in log[1:]] or [log[-1]["tokens_per_second"]]
    seconds = [batch / e["examples_per_second"] for e in log]
    return float(statistics.median(rates)), max(0.0, seconds[0] - statistics.median(seconds[1:] or seconds))


def estimate_lines(e: Estimate) -> list[str]:
    return [f"    training: {e.examples} examples x {e.texts_per_example:g} texts (query ~{e.query_tokens:g}, "
            f"passages ~{e.passage_tokens:g} tokens after truncation) = {si(e.train_tokens)} tokens; "
            f"N = {si(e.parameters)} parameters; {si(e.train_flops, 'FLOP')} ({e.flops_form})",
            f"    eval: {sum(e.eval_texts.values())} texts ("
            + ", ".join(f"{t} {n}" for t, n in e.eval_texts.items()) + f"), {si(e.eval_tokens)} tokens, "
            f"{si(e.eval_flops, 'FLOP')} (2·N·T)",
            f"    time: train ~{duration(e.train_seconds)}, eval ~{duration(e.eval_seconds)} at "
            f"{si(e.tokens_per_second)} training tokens/s ({e.throughput_source})"]


def sweep_estimates(groups: list[Any], seeds: int, throughput: float | None) -> dict[str, Estimate]:
    """Per variant: its estimate; a throughput given is used as is, else each distinct (model,
    train) setting is calibrated once here (variants that differ only in their data reuse that
    probe's rate per padded token, at their own lengths: calibrated_rate)."""
    from harness.hashing import content_hash

    probes: dict[str, tuple[tuple[float, float], str]] = {}  # (model, train) -> (probe, first variant)
    out: dict[str, Estimate] = {}
    for group in groups:
        config = group.config
        if throughput:
            rate, warmup, source = throughput, 0.0, "given with --throughput"
        else:
            key = content_hash({"model": config.model.model_dump(mode="json"),
                                "train": config.train.model_dump(mode="json", exclude={"seed"})})
            if key not in probes:
                probe = probe_rate(config, group.lengths, group.negatives_per_row)
                probes[key] = (probe, group.names[0])
                source = f"calibrated here: {CALIBRATION_STEPS} training steps of this variant"
            else:
                source = (f"calibrated here: {CALIBRATION_STEPS} training steps of {probes[key][1]} (same model and "
                          "training settings), at this variant's lengths")
            rate, warmup = calibrated_rate(config, group.lengths, group.negatives_per_row, probe=probes[key][0])
        e = estimate(config, group.lengths, rows=group.rows, negatives_per_row=group.negatives_per_row,
                     tokens_per_second=rate, source=source, warmup_seconds=warmup)
        for name in group.names:
            out[name] = e
    return out


def sweep_text(estimates: dict[str, Estimate], seeds: int) -> str:
    lines = ["", f"compute estimate (per run; {seeds} seed(s) per variant):"]
    for name, e in estimates.items():
        lines.append(f"  {name}:")
        lines += estimate_lines(e)
    runs = [e for e in estimates.values() for _ in range(seeds)]
    total_seconds = sum((e.train_seconds or 0) + (e.eval_seconds or 0) for e in runs)
    flops = [e.train_flops for e in runs]
    lines.append(f"  sweep: {len(runs)} runs, {si(sum(e.train_tokens for e in runs))} training tokens, "
                 f"{si(sum(f for f in flops if f) if all(flops) else None, 'FLOP')} training, "
                 f"{sum(sum(e.eval_texts.values()) for e in runs)} eval texts; ~{duration(total_seconds)} "
                 "one after another (cache hits not subtracted)")
    return "\n".join(lines)


def write_estimates(plans: list[Any], estimates: dict[str, Estimate]) -> None:
    """seed-N/estimate.json beside each published run, for the report's estimate-vs-actual table. The
    estimate made before its train stage was built stays: a later ablate that finds everything
    cached leaves the file (and the report) as they were."""
    import json

    from harness import atomic

    for p in plans:
        path = p.results_dir / "estimate.json"
        if p.variant.name not in estimates or not (p.results_dir / "run.json").is_file():
            continue
        if path.is_file():
            try:
                if json.loads(path.read_text(encoding="utf-8")).get("train_stage") == p.train.hash:
                    continue
            except ValueError:
                pass
        atomic.write_json(path, {**estimates[p.variant.name].to_dict(), "train_stage": p.train.hash})
