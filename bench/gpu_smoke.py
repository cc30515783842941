"""GPU smoke test: the real device path of recipes/kalm-v1.yaml, end to end, in minutes, offline.

Run by a maintainer on a GPU machine (no Hub access needed), through `bench/gpu_smoke.sh`:

1. torch and CUDA: version, device, native bf16, what `bf16: auto` resolves to.
2. A Qwen2-0.5B-shaped model (random init, real shapes, the real Qwen2 tokenizer) trained for a
   few dozen steps with kalm-v1.yaml's settings — causal, mean pooling, tau 0.01, 7 hard negatives,
   Matryoshka 896..64, per-device batch 48, max length 512, `bf16: auto`, gradient checkpointing —
   on synthetic FlagEmbedding rows, through `torchrun --nproc_per_node 1 -m harness train`: a
   one-process group, so the NCCL code path runs (gloo on the CPU). lr is 1e-4 instead of 1e-5 so a
   random-init model visibly learns in a few dozen steps.
3. Encoding throughput (texts/s) of the trained model, harness vs sentence-transformers on the same
   model, texts and precision, in the same process.
4. tokens/s, achieved TFLOP/s as a fraction of the device's measured bf16 (or float32) matmul
   peak, peak device memory, and PASS/FAIL lines: finite losses, loss decreasing,
   `SentenceTransformer(export)` equal to the harness's embeddings to 1e-3.
5. Precision per device: what `bf16: auto` resolves to on every visible GPU (compute capability
   >= 8.0 means bf16; a V100 or T4 must say float32).
6. Ranks agree: a LoRA variant trained for a few steps by 2 ranks under torchrun (NCCL on 2 GPUs,
   gloo with --cpu) — every rank holds rank 0's weights (max |diff| 0), and each rank's device and
   precision are listed. Skipped with fewer than 2 GPUs.

`--cpu --tiny` runs the same steps on the CPU with a tiny model (a test runs it). Exit code 1 if any
check fails.
"""

from __future__ import annotations

import argparse
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

REPO = Path(__file__).resolve().parent.parent
QWEN2_05B = {"vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
             "num_attention_heads": 14, "num_key_value_heads": 2, "max_position_embeddings": 32768,
             "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": True,
             "bos_token_id": 151643, "eos_token_id": 151643}
TINY = {**QWEN2_05B, "hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 2048}
WORDS = ("river mountain table window garden number letter signal market station harbour bridge forest "
         "engine planet museum library kitchen theatre valley island desert castle tunnel meadow orchard "
         "lantern compass anchor beacon canyon glacier prairie summit").split()
RESULTS: list[tuple[str, bool, str]] = []


def check(name: str, ok: bool, detail: str) -> None:
    RESULTS.append((name, ok, detail))
    print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}", flush=True)


def text(rng: random.Random, words: int, prefix: list[str] | None = None) -> str:
    return " ".join((prefix or []) + [rng.choice(WORDS) for _ in range(words)])


def synthetic_rows(path: Path, n: int, words: int, negatives: int, seed: int = 0) -> None:
    """Positives share the query's words (learnable); negatives are random text of the same length."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        for _ in range(n):
            query = [rng.choice(WORDS) for _ in range(8)]
            handle.write(json.dumps({"query": " ".join(query), "pos": [text(rng, words, query)],
                                     "neg": [text(rng, words) for _ in range(negatives)]}) + "\n")


def matmul_peak_tflops(device: Any, dtype: Any, size: int, repeats: int = 5) -> float:
    import torch

    a, b = torch.randn(size, size, device=device, dtype=dtype), torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e12


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="run on the CPU (no GPU needed)")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer, hidden-64 Qwen2 and short texts")
    parser.add_argument("--steps", type=int, help="training steps (default 40; 6 with --tiny)")
    parser.add_argument("--encode-texts", type=int, help="texts for the encode throughput (default 4096; 64 tiny)")
    parser.add_argument("--workdir", help="keep the model, data and cache here (default: a temp folder)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="harness-gpu-smoke-"))
    os.environ["HARNESS_CACHE"] = str(workdir / "cache")
    sys.path.insert(0, str(REPO))

    import torch

    from harness.devices import cpu_capability, resolve_compute

    # ---------------------------------------------------------------- 1. torch and the device
    print(f"torch {torch.__version__}; CUDA build {torch.version.cuda}; CPU capability {cpu_capability()}")
    if not args.cpu:
        check("CUDA available", torch.cuda.is_available(),
              torch.cuda.get_device_name(0) if torch.cuda.is_available() else "torch.cuda.is_available() is False")
        if not torch.cuda.is_available():
            return 1
    compute = resolve_compute("cpu" if args.cpu else "auto", "auto")
    device, precision = compute.device, compute.precision
    print(f"device {device}; bf16: auto -> {precision.name} ({precision.reason})")
    if not args.cpu:  # 5. every visible GPU: a mixed node must resolve per device
        for index in range(torch.cuda.device_count()):
            print(f"  cuda:{index}: bf16: auto -> {resolve_compute(f'cuda:{index}', 'auto').precision.reason}")

    # ---------------------------------------------------------------- 2. model, data, training
    tiny = args.tiny
    shape = TINY if tiny else QWEN2_05B
    steps = args.steps or (6 if tiny else 40)
    batch, length = (4, 32) if tiny else (48, 512)
    dims = [64, 32] if tiny else [896, 512, 256, 128, 64]
    words = length - 16  # ~1 token per word: texts fill the length, as KaLM's 512-token passages do
    from transformers import Qwen2Config, Qwen2Model

    from harness.backbones.qwen_tokenizer import qwen2_tokenizer

    backbone = workdir / "qwen2-shape"
    if not (backbone / "config.json").is_file():
        torch.manual_seed(0)
        Qwen2Model(Qwen2Config(**shape)).save_pretrained(backbone)
        qwen2_tokenizer().save_pretrained(backbone)
    data = workdir / "data" / "synthetic.jsonl"
    data.parent.mkdir(parents=True, exist_ok=True)
    synthetic_rows(data, batch * steps, words, negatives=7)
    config = {
        "model": {"backbone": str(backbone), "attention": "causal", "pooling": "mean", "instructions": False,
                  "query_max_length": length, "passage_max_length": length},
        "data": {"hard_negatives": 7, "sources": {"synthetic": {"kind": "flag-jsonl", "path": str(data)}}},
        "train": {"steps": steps, "batch_size": batch, "nproc": 1, "lr": 1e-4, "warmup_ratio": 0.1,
                  "temperature": 0.01, "matryoshka": {"dims": dims, "weights": [1.0, 0.3, 0.2, 0.1, 0.1][: len(dims)]},
                  "bf16": "auto", "device": "cpu" if args.cpu else "auto", "gradient_checkpointing": True,
                  "log_every": 1},
    }
    with torch.device("meta"):  # counted without allocating: the real shape is 0.5 B parameters
        counted = {n: p.numel() for n, p in Qwen2Model(Qwen2Config(**shape)).named_parameters()}
    cfg_path = workdir / "variant.yaml"
    import yaml

    cfg_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    print(f"training {steps} steps of batch {batch} x (1 query + 1 positive + 7 negatives) x {length} tokens, "
          f"{sum(counted.values()) / 1e6:.0f} M params, "
          "through torchrun --nproc_per_node 1 ...", flush=True)
    started = time.perf_counter()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
           "-m", "harness", "train", str(cfg_path), "--no-progress"]
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    wall = time.perf_counter() - started
    check("training ran (torchrun, one-process group)", proc.returncode == 0,
          f"exit {proc.returncode} in {wall:.0f} s" + (f"; {proc.stderr.strip().splitlines()[-1:]}"
                                                      if proc.returncode else ""))
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
        return 1
    from harness.cli import load_variant_config
    from harness.stages import train_stage

    variant = load_variant_config(cfg_path)
    stage = train_stage(variant)
    summary = json.loads((stage.dir / "summary.json").read_text())
    losses = [json.loads(line)["loss"] for line in (stage.dir / "log.jsonl").read_text().splitlines()]
    check("losses finite", all(math.isfinite(x) for x in losses), f"{len(losses)} steps, first {losses[0]:.4f}, "
          f"last {losses[-1]:.4f}")
    quarter = max(1, len(losses) // 4)
    first, last = sum(losses[:quarter]) / quarter, sum(losses[-quarter:]) / quarter
    check("loss decreasing", last < first, f"mean of first {quarter} steps {first:.4f} -> last {quarter} {last:.4f}")
    print(f"precision {summary['precision']} on {summary['device']} ({summary['precision_reason']})")

    # ---------------------------------------------------------------- 4. throughput and memory
    tokenizer = qwen2_tokenizer()
    sample = [json.loads(line) for line in data.read_text().splitlines()[:64]]
    seqs = [len(tokenizer(t, truncation=True, max_length=length)["input_ids"])
            for r in sample for t in (r["query"], *r["pos"], *r["neg"])]
    rows_trained = batch * steps
    tokens = sum(seqs) / len(sample) * rows_trained
    tokens_per_s = tokens / summary["train_seconds"]
    non_embedding = sum(count for n, count in counted.items() if "embed_tokens" not in n)
    attention = 12 * shape["num_hidden_layers"] * shape["hidden_size"] * sum(s * s for s in seqs) / len(sample) \
        * rows_trained
    model_flops = 6 * non_embedding * tokens + attention  # the MFU convention: recomputation not counted
    peak_dtype = torch.bfloat16 if precision.bf16 else torch.float32
    peak = matmul_peak_tflops(device, peak_dtype, 512 if args.cpu else 8192)
    achieved = model_flops / summary["train_seconds"] / 1e12
    print(f"train: {tokens_per_s:,.0f} tokens/s; {achieved:.3f} TFLOP/s model FLOPs = {achieved / peak:.1%} of the "
          f"measured {precision.name} matmul peak ({peak:.2f} TFLOP/s); {summary['examples_per_second']} examples/s")
    if device.type == "cuda":
        print(f"peak device memory (rank 0): {summary.get('peak_device_memory_mb', 0) / 1024:.2f} GB")
    else:
        print(f"peak RSS of the training process: {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2:.2f} GB")

    # ---------------------------------------------------------------- 3. encode, and the export
    from sentence_transformers import SentenceTransformer

    from harness.model import Embedder

    checkpoint = stage.dir / "model"
    ours = Embedder.from_config(variant.model, checkpoint=checkpoint).to(device)
    theirs = SentenceTransformer(str(checkpoint), device=str(device), model_kwargs={"dtype": torch.float32})
    probe = [text(random.Random(i), 24) for i in range(16)]
    a = ours.encode(probe, max_length=length, batch_size=8)
    b = theirs.encode(probe, batch_size=8, convert_to_numpy=True)
    diff = float(abs(a - b).max())
    check("SentenceTransformer(export) equals the harness", diff <= 1e-3, f"max |diff| {diff:.2e} (float32)")

    n_texts = args.encode_texts or (64 if tiny else 4096)
    texts = [text(random.Random(1000 + i), 200 if not tiny else 24) for i in range(n_texts)]
    timings = {}
    for name, run in (("harness", lambda: ours.encode(texts, max_length=length, batch_size=64, bf16=precision.bf16)),
                      ("sentence-transformers", lambda: _st_encode(theirs, texts, device, precision.bf16))):
        run()  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        timings[name] = time.perf_counter() - start
    print(f"encode {n_texts} texts ({precision.name}): harness {n_texts / timings['harness']:,.0f} texts/s, "
          f"sentence-transformers {n_texts / timings['sentence-transformers']:,.0f} texts/s "
          f"(harness/ST speed {timings['sentence-transformers'] / timings['harness']:.2f}x)")

    # ---------------------------------------------------------------- 6. ranks agree
    if args.cpu or torch.cuda.device_count() >= 2:
        ranks_agree(config, workdir, min(steps, 4), cpu=args.cpu)
    else:
        print(f"SKIP  ranks agree: needs 2 GPUs, {torch.cuda.device_count()} visible")

    failed = [name for name, ok, _ in RESULTS if not ok]
    print(f"\n{len(RESULTS) - len(failed)}/{len(RESULTS)} checks passed" + (f"; FAILED: {failed}" if failed else ""))
    print(f"work folder: {workdir}")
    return 1 if failed else 0


def ranks_agree(config: dict[str, Any], workdir: Path, steps: int, *, cpu: bool) -> None:
    """2 ranks train a LoRA variant (adapters are drawn at random: the case that diverged) for a
    few steps; every rank must hold rank 0's weights. Lists each rank's device and precision."""
    import yaml

    lora = {**config, "train": {**config["train"], "nproc": 2, "steps": steps,
                                "lora": {"r": 8, "alpha": 16, "targets": ["q_proj", "v_proj"]}}}
    path = workdir / "variant-lora-2ranks.yaml"
    path.write_text(yaml.safe_dump(lora), encoding="utf-8")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(REPO / "bench" / "gpu_ranks.py"), str(path), str(steps)]
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        check("ranks agree", False, f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
        return
    result = json.loads(lines[-1])
    for rank in result["ranks"]:
        print(f"  rank {rank['rank']}: {rank['device']} ({rank['capability']}), {rank['precision']} — {rank['reason']}")
    check(f"ranks agree after {result['steps']} steps (LoRA, {result['backend']})", result["max_diff"] == 0.0,
          f"max |w - w_rank0| {result['max_diff']:.3g} over all parameters and ranks")


def _st_encode(model: Any, texts: list[str], device: Any, bf16: bool) -> Any:
    """sentence-transformers on the same precision: bf16 autocast around encode when the harness uses it."""
    from harness.devices import autocast

    with autocast(device, bf16):
        return model.encode(texts, batch_size=64, convert_to_numpy=True)


if __name__ == "__main__":
    sys.exit(main())
