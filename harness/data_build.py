"""`python -m harness data build`: run only the data stages of a recipe and show each card.

Users inspect (and share) the data before spending GPU hours. The same cached stages `ablate`
uses are built here, so a later `ablate` finds them done. The teacher pass of a filtered variant
can be spread over processes: every rank of `torchrun --nproc_per_node N -m harness data build`
encodes its shard (then rank 0 searches and writes the stage), or N executor jobs each run
`data build --shard I/N` and one final `data build` merges their shards.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.recipe import Recipe


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' (0-based I) -> (I, N), with a clear error."""
    try:
        index, total = (int(part) for part in text.split("/"))
    except ValueError:
        raise HarnessError(f"--shard {text!r}: expected I/N, e.g. 0/4 (0-based shard I of N)") from None
    if total < 1 or not 0 <= index < total:
        raise HarnessError(f"--shard {text!r}: need N >= 1 and 0 <= I < N")
    return index, total


def card_text(name: str, stage_hash: str, card: dict[str, Any], built: bool) -> str:
    """A readable summary of one data card (the full JSON sits beside the table)."""
    lines = [f"{name}  data {stage_hash}  ({'built' if built else 'cached'})",
             f"  rows {card['rows']}" + (f" -> {card['rows_after_filter']} after filter" if "rows_after_filter" in card else "")
             + f", tasks {card['tasks']}, hard negatives/row {card['hard_negatives_per_row']:.2f}, "
               f"with instruction {card['rows_with_instruction']}, content {card['content_hash']}"]
    for source, info in card["sources"].items():
        lines.append(f"  source {source} ({info['kind']}, weight {info['weight']}): {info['rows_available']} available, "
                     f"{info['rows_sampled']} sampled, {info['duplicates_removed']} duplicates, {info['rows_kept']} kept, "
                     f"{info['hard_negatives_trimmed']} negatives trimmed, {info['malformed_rows_skipped']} malformed skipped")
    if "filter" in card:
        f = card["filter"]
        lines.append(f"  filter top_k {f['top_k']}: {f['rows_before']} -> {f['rows_after']} rows, dropped {f['dropped']}, "
                     f"negatives {f['negatives']}, teacher pass {f['teacher']['teacher_pass']}")
    return "\n".join(lines)


def data_build(recipe_path: str | Path, *, variant: str | None = None, shard: tuple[int, int] | None = None,
               show_progress: bool = True, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Build the data stage of every variant of a recipe (or one), each distinct stage once.

    `shard=(i, n)`: only encode shard i of n of each filtered variant's teacher pass and return.
    Under torchrun (WORLD_SIZE > 1) every rank encodes its shard, rank 0 writes the stages.
    """
    from harness.recipe import load_recipe
    from harness.references import Resolver

    recipe = load_recipe(recipe_path)
    with Resolver.for_recipe(recipe.path, overrides=recipe.overrides).active():
        return _build(recipe, variant, shard, show_progress, log)


def _build(recipe: Recipe, variant: str | None, shard: tuple[int, int] | None, show_progress: bool,
           log: Callable[[str], None]) -> list[dict[str, Any]]:
    from harness.data.mix import encode_shard
    from harness.distributed import barrier, init_from_env
    from harness.stages import data_stage
    from harness.train.stage import build_data

    recipe_path = recipe.path
    variants = recipe.variants
    if variant is not None:
        variants = [v for v in variants if v.name == variant]
        if not variants:
            raise HarnessError(f"{recipe_path}: no variant {variant!r}; variants: {', '.join(v.name for v in recipe.variants)}")
    configs: dict[str, Any] = {}
    names: dict[str, str] = {}
    for v in variants:
        config = v.run_config(recipe.seeds[0])
        key = data_stage(config).hash
        configs.setdefault(key, config)
        names.setdefault(key, v.name)
    world = init_from_env()
    results = []
    for key, config in configs.items():
        stage = data_stage(config)
        if shard is not None or (world.distributed and not stage.done()):
            index, total = shard if shard is not None else (world.rank, world.size)
            if config.data.filter is not None and not stage.done():
                if world.distributed and not world.is_main:
                    barrier(world)  # rank 0 builds the mix first
                elif world.distributed:
                    from harness.data.mix import ensure_mix

                    ensure_mix(config.data, show_progress=show_progress)
                    barrier(world)
                done = encode_shard(config.data, index, total, show_progress=show_progress and world.is_main)
                log(f"{names[key]}  data {key}  teacher shard {index + 1}/{total}: {done['texts_encoded']} texts "
                    f"encoded ({'all shards done' if done['complete'] else 'waiting for other shards'})")
            barrier(world)
            if shard is not None:
                results.append({"variant": names[key], "data": key, "shard": [index, total]})
                continue
        if world.is_main:
            card = build_data(config, show_progress=show_progress)
            built = bool(card.pop("built"))
            log(card_text(names[key], key, card, built))
            log(f"  card: {stage.dir / 'card.json'}")
            results.append({"variant": names[key], "data": key, "built": built, "card": card})
        barrier(world)
    return results

