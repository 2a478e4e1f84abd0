"""The encoder families by spec prefix: each registers its spec syntax, what it is and where its weights come
from; ``find_weights`` looks a family's weights up (explicit path, ``weights.yaml``, ``$CYTOFM_WEIGHTS``)."""

from __future__ import annotations

import os
from pathlib import Path

from cytofm.models import loading
from cytofm.models.encoder import EncoderError
from cytofm.models.weights import weights_config, weights_dir
from cytofm.utils.registry import Registry

ENCODER_FAMILIES: Registry = Registry("encoder family")
# each entry: ``fn(arg) -> Encoder`` for the specs ``name:arg``; ``syntax`` and ``weights_from`` (where to get
# weights, licence or gate; "" = none needed) are read by messages and ``cytofm doctor`` without importing it.
# The order is the order of the listings.
ENCODER_FAMILIES.add("random", "cytofm.models.families.baselines:random_encoder",
                     "the architecture at a seeded random init (the baseline to beat)",
                     syntax="random:<timm arch>[:<seed>]", weights_from="")
ENCODER_FAMILIES.add("handcrafted", "cytofm.models.families.baselines:handcrafted_encoder",
                     "colour, stain density, intensity and texture statistics (not learned)",
                     syntax="handcrafted", weights_from="")
ENCODER_FAMILIES.add("morphometrics", "cytofm.models.families.baselines:morphometrics_encoder",
                     "the cell measurements of `prepare --cells` as features "
                     "(`extract --mode cells`; no pixels read)",
                     syntax="morphometrics", weights_from="")
ENCODER_FAMILIES.add("timm", "cytofm.models.families.timm_hub:timm_encoder",
                     "any timm model, weights from a local file or hub folder (or the hub when allowed)",
                     syntax=("timm:<model>[:<path>] | timm:hf-hub:<org/repo> "
                             "| timm:local-dir:<dir>"),
                     weights_from="the model's page on huggingface.co/timm (licence per model)")
ENCODER_FAMILIES.add("local-dir", "cytofm.models.families.timm_hub:local_dir_encoder",
                     "a folder in the Hugging Face hub layout (config.json + model.safetensors)",
                     syntax="local-dir:<dir>", weights_from="")
ENCODER_FAMILIES.add("hf-hub", "cytofm.models.families.timm_hub:hf_hub_encoder",
                     "a timm model repository on the Hugging Face hub (fetched only when allowed)",
                     syntax="hf-hub:<org/repo>",
                     weights_from=("the repository's page on huggingface.co "
                                   "(licence per model; some are gated)"))
ENCODER_FAMILIES.add("cytofm-paper", "cytofm.models.families.releases:cytofm_paper_encoder",
                     "the released CytoFM ViT-B/16 (iBOT checkpoint dict, teacher)",
                     syntax="cytofm-paper:<path>",
                     weights_from="the CytoFM authors' release (Ivezic et al., CVPR Workshops 2025)")
ENCODER_FAMILIES.add("ibot-imagenet", "cytofm.models.families.releases:ibot_encoder",
                     "official iBOT ImageNet ViT-S/16 or ViT-B/16 (checkpoint dict, teacher)",
                     syntax="ibot-imagenet:<path>",
                     weights_from="github.com/bytedance/ibot (Apache-2.0)")
ENCODER_FAMILIES.add("uni", "cytofm.models.families.releases:uni_encoder",
                     "UNI (Chen et al. 2024): DINOv2 ViT-L/16 with LayerScale, histology",
                     syntax="uni:<path>",
                     weights_from=("huggingface.co/MahmoodLab/UNI (gated: request access; "
                                   "CC-BY-NC-ND 4.0, non-commercial)"))
ENCODER_FAMILIES.add("dinov2", "cytofm.models.families.releases:dinov2_encoder",
                     "DINOv2 (Oquab et al. 2023), natural images, 224 px",
                     syntax="dinov2:<vits14|vitb14|vitl14|vitg14|path>",
                     weights_from="github.com/facebookresearch/dinov2 (Apache-2.0)")
ENCODER_FAMILIES.add("dinobloom", "cytofm.models.families.releases:dinobloom_encoder",
                     "DinoBloom (Koch et al. 2024): DINOv2 tuned on blood-cell images",
                     syntax="dinobloom:<s|b|l|g>:<path>",
                     weights_from="github.com/marrlab/DinoBloom (weights on Zenodo/Hugging Face; Apache-2.0)")
ENCODER_FAMILIES.add("phikon", "cytofm.models.families.releases:phikon_encoder",
                     "Phikon (Filiot et al. 2023): iBOT ViT-B/16 on TCGA histology (Hugging Face layout)",
                     syntax="phikon:<path>",
                     weights_from="huggingface.co/owkin/phikon (Owkin non-commercial licence)")
ENCODER_FAMILIES.add("cytofm", "cytofm.models.families.cytofm:cytofm_encoder",
                     "an encoder pretrained with cytofm (default: the one shipped)",
                     syntax="cytofm[:<export.safetensors | run dir | hub folder>]", weights_from="")


def _configured_paths() -> dict[str, str]:
    p = weights_config()
    if not p.is_file():
        return {}
    import yaml

    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise EncoderError(f"{p}: invalid YAML ({e})") from None
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def find_weights(name: str, explicit: str | None) -> Path:
    """An explicit path, else ``weights.yaml`` entry ``name``, else ``$CYTOFM_WEIGHTS/name.*``."""
    if explicit:
        p = Path(explicit).expanduser()
        if not p.exists():
            raise EncoderError(f"{name}: weights not found at {p}")
        return p
    cfg = _configured_paths()
    if name in cfg:
        p = Path(cfg[name]).expanduser()
        if not p.exists():
            raise EncoderError(f"{name}: {weights_config()} points to {p}, which does not exist")
        return p
    d = weights_dir()
    for ext in (".safetensors", ".pth", ".pt", ".bin", ""):
        p = d / f"{name}{ext}"
        if p.exists():
            return p
    family = name.split(":")[0]
    entry = ENCODER_FAMILIES.entry(family) if family in ENCODER_FAMILIES else None
    how = f" Get them from {entry.weights_from}." if entry and entry.weights_from else ""
    raise EncoderError(f"{name}: no weights given and none configured.{how} Then pass the path "
                       f"(e.g. {entry.syntax if entry else name + ':/path'}), add '{name}: /path' to "
                       f"{weights_config()}, or put the file at {d}/{name}.<ext>")


def load_state(path: str | os.PathLike) -> dict:
    """A state dict or checkpoint dict (see :mod:`cytofm.models.loading`: never runs code from a pickle)."""
    try:
        return loading.load_state(path)
    except ValueError as e:
        raise EncoderError(str(e)) from None
