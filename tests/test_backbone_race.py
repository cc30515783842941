"""Two training ranks on an empty machine cache both get a complete tiny-qwen2 (issue 17, point 6).

The race the issue saw: once torch.distributed is initialised, transformers' `save_pretrained`
writes nothing on rank 1, so a rank 1 that won the build lock committed a tiny-qwen2 folder with
only the tokenizer in it. These ranks initialise gloo first, as the train path does, then load.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch

from .conftest import private_machine_cache, run_ranks


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank(rank: int, port: int, machine_cache: str, rank1_first: bool, out: str) -> None:
    os.environ.update({"HARNESS_MACHINE_CACHE": machine_cache, "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    from harness.backbones import load_backbone
    from harness.backbones.tokenizer_cache import forget_loaded

    forget_loaded()  # a forked rank starts with its parent's tokenizers: load from this cache, as a fresh rank

    if rank1_first and rank == 0:
        torch.distributed.barrier()  # rank 1 builds (with the process group up), rank 0 then loads
    if not rank1_first:
        torch.distributed.barrier()  # line both up, then race for the build
    backbone = load_backbone("tiny-qwen2")
    if rank1_first and rank == 1:
        torch.distributed.barrier()
    Path(out, f"rank{rank}.txt").write_text(f"{backbone.model.config.model_type} {backbone.model.num_parameters()}")
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("round_", ["rank 1 builds", "race 1", "race 2"])
def test_two_ranks_on_an_empty_machine_cache_both_load_tiny_qwen2(tmp_path: Path, round_: str) -> None:
    # Empty in "race 1": the ranks convert the tokenizer and build tiny-qwen2. The other rounds race
    # for tiny-qwen2 only (the tokenizer is copied in), which is what the ranks lost.
    machine_cache = private_machine_cache(tmp_path / "machine", tokenizer=round_ != "race 1", tiny_qwen2=False)
    run_ranks(_rank, (_free_port(), str(machine_cache), round_ == "rank 1 builds", str(tmp_path)))
    loaded = {(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)}
    assert len(loaded) == 1 and next(iter(loaded)).startswith("qwen2 "), loaded
    (folder,) = (machine_cache / "backbones").glob("tiny-qwen2-*")
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    assert not list((machine_cache / "backbones").glob(".*")), "no staging or lock files left behind"


@pytest.mark.slow
def test_an_incomplete_tiny_qwen2_folder_from_an_older_version_is_rebuilt(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.backbones import load_backbone
    from harness.backbones.tiny_qwen2 import tiny_qwen2_path

    private_machine_cache(tmp_path / "machine", monkeypatch, tiny_qwen2=False)  # the converted tokenizer only
    folder = tiny_qwen2_path()
    folder.mkdir(parents=True)
    (folder / "tokenizer_config.json").write_text("{}")  # what the race left behind
    assert load_backbone("tiny-qwen2").model.config.model_type == "qwen2"
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
