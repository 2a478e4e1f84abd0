"""The encoder families by spec prefix, names only: each registers its spec syntax, what it is and where its
weights come from (found by :func:`cytofm.models.weights.find_weights`, built by
:mod:`cytofm.models.build`)."""

from __future__ import annotations

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

