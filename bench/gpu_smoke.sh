#!/usr/bin/env bash
# GPU smoke test of the real device path (kalm-v1 settings, NCCL, bf16: auto, encode vs
# sentence-transformers), offline, in minutes. On a CPU-only machine: bench/gpu_smoke.sh --cpu --tiny
# Options: --cpu, --tiny, --steps N, --encode-texts N, --workdir DIR (see bench/gpu_smoke.py --help).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
exec python bench/gpu_smoke.py "$@"
