"""Why `bf16: auto` and float32 master weights: measured on this machine, in one process.

1. Matmul throughput, float32 vs bf16, at a few sizes (the calibration `bf16: auto` relies on),
   with the CPU's vector ISA: on AVX2-only CPUs bf16 is emulated.
2. One minilm training step (the quickstart's shape), float32 vs bf16 autocast: the ratio is what
   `bf16: true` would cost here.
3. One full fine-tuning step at KaLM's lr 1e-5 on a bf16-stored Qwen2-shaped model: the fraction of
   the trained (non-embedding) weights that change when the weights are trained in their stored
   bf16 (what happened before float32 master weights) vs loaded in float32 (what the harness does).

    python bench/bench_precision.py [--sections 1,2,3]
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def heading(title: str) -> None:
    print(f"\n== {title}")


def matmul_gflops(dtype: Any, size: int, repeats: int = 3) -> float:
    import torch

    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def bench_matmul() -> None:
    import torch

    from harness.devices import cpu_bf16_native, cpu_capability, cpu_model

    heading(f"1. matmul throughput on {cpu_model()} (torch capability {cpu_capability()}, "
            f"{torch.get_num_threads()} threads)")
    for size in (256, 512, 1024):
        fp32, bf16 = matmul_gflops(torch.float32, size), matmul_gflops(torch.bfloat16, size)
        print(f"  {size:5d}^2: float32 {fp32:8.1f} GFLOP/s   bf16 {bf16:8.1f} GFLOP/s   bf16/fp32 {bf16 / fp32:6.3f}x")
    native, why = cpu_bf16_native()
    print(f"  bf16: auto resolves to {'bf16' if native else 'float32'} here: {why}")


def bench_step(steps: int) -> None:
    import torch

    from harness.config import ModelConfig, TrainConfig
    from harness.model import Embedder

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_train import filler_texts, harness_step, make_step

    heading(f"2. one minilm training step (batch 32 + 32, 64 tokens), float32 vs bf16 autocast, {steps} steps each")
    queries, passages = filler_texts(32, 64, seed=1), filler_texts(32, 64, seed=2)
    times = {}
    for bf16 in (False, True):
        torch.manual_seed(0)
        model = Embedder.from_config(ModelConfig(backbone="minilm", instructions=False))
        model.train()
        step = make_step(model, TrainConfig(lr=5e-5, bf16=bf16), (64, 64), bf16)
        harness_step(step, queries, passages, list(range(32)))  # warm-up
        times[bf16] = min(harness_step(step, queries, passages, list(range(32)))["step"] for _ in range(steps))
    print(f"  float32 {times[False]:.2f} s/step   bf16 autocast {times[True]:.2f} s/step   "
          f"bf16/float32 {times[True] / times[False]:.2f}x")


def bench_master_weights() -> None:
    import torch
    from transformers import AutoModel, Qwen2Config, Qwen2Model

    from harness.backbones.qwen_tokenizer import qwen2_tokenizer

    heading("3. one full fine-tuning step at lr 1e-5 (AdamW, weight decay 0.01) on a bf16-stored Qwen2-shaped model")
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=151936, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    tokenizer = qwen2_tokenizer(padding_side="left")
    with tempfile.TemporaryDirectory() as tmp:
        Qwen2Model(config).to(torch.bfloat16).save_pretrained(tmp)
        texts = [f"sentence number {i} about a topic of its own" for i in range(16)]
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        for label, dtype in (("trained in the stored bf16 (before)", torch.bfloat16),
                             ("loaded in float32 (harness)", torch.float32)):
            model = AutoModel.from_pretrained(tmp, dtype=dtype)
            model.config.use_cache = False
            before = copy.deepcopy(model.state_dict())
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01)
            hidden = model(**batch).last_hidden_state.float()
            emb = torch.nn.functional.normalize(hidden.mean(1), dim=-1)
            loss = torch.nn.functional.cross_entropy(emb @ emb.roll(1, 0).T / 0.01, torch.arange(len(texts)))
            loss.backward()
            optimizer.step()
            after = model.state_dict()
            dense = [k for k in before if "embed_tokens" not in k]
            changed = sum(int((before[k].float() != after[k].float()).sum()) for k in dense)
            total = sum(before[k].numel() for k in dense)
            print(f"  {label:38s}: {changed / total:6.1%} of {total / 1e6:.1f} M non-embedding weights changed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default="1,2,3", help="which sections to run, e.g. 1,3")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per precision in section 2")
    args = parser.parse_args()
    sections = {s.strip() for s in args.sections.split(",")}
    if "1" in sections:
        bench_matmul()
    if "2" in sections:
        bench_step(args.steps)
    if "3" in sections:
        bench_master_weights()


if __name__ == "__main__":
    main()
