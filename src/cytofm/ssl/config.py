"""Typed config of ``cytofm pretrain`` (iBOT, DINOv2).

Defaults follow the reference implementation's (bytedance/ibot ``main_ibot.py``) defaults, with
schedules in iterations (ImageNet-1k at batch 1024 = 1251 iterations an epoch); the presets
``ibot_reference_vit_small``/``_vit_base`` set the README's training command option by option, and
docs/ibot_reference.md lists every preset's departures from the reference with the reason.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from cytofm.config.loader import Section
from cytofm.ssl.method_registry import METHODS, check_method_settings


class ModelConfig(Section):
    arch: str = "vit_small_patch16_224"
    """Any timm VisionTransformer (vit_tiny/small/base/large, patch 8/14/16)."""
    drop_path: float = Field(0.1, ge=0, lt=1)
    """Stochastic depth of the student only."""
    layerscale: float | None = None
    """LayerScale init value (DINOv2/UNI backbones use it); ``null`` = the architecture's default."""
    mask_token_init: Literal["zeros", "trunc_normal"] = "zeros"
    """Initial mask token: zeros (reference) or trunc-normal(0.02) (BEiT's choice)."""


class HeadConfig(Section):
    out_dim: int = Field(8192, ge=2)
    """Number of prototypes K."""
    hidden_dim: int = Field(2048, ge=8)
    bottleneck_dim: int = Field(256, ge=8)
    nlayers: int = Field(3, ge=1)
    shared: bool = False
    """Student: one last layer for [CLS] and patch tokens (reference default: a separate patch layer)."""
    shared_teacher: bool = True
    """Teacher: one last layer for [CLS] and patch tokens (reference default: shared). A shared teacher
    layer follows the student's [CLS] layer by EMA; at the start it holds the student's patch layer, as
    in the reference (its ``load_state_dict`` visits the shared layer under both names, the patch name
    last)."""
    norm_last_layer: bool = True
    """Freeze the weight-norm gain of the last layer at 1 (more stable; the reference turns it off for
    ViT-S)."""
    fp32: bool | Literal["last_layer"] = True
    """Precision of the head under bf16/fp16 autocast: ``true`` all of it in fp32 (its logits need more
    precision than bf16 has), ``last_layer`` the MLP in bf16 and the normalisation and prototype layer in
    fp32 (faster; the cosine logits keep fp32), ``false`` all in bf16."""
    separate: bool = False
    """DINOv2: a [CLS] head and a patch head with no shared layer (``shared``/``shared_teacher`` then do
    not apply). iBOT shares the MLP and separates only the last layer."""
    freeze_last_layer_iters: int = Field(1250, ge=0)
    """Iterations during which the last layer gets no update (1 epoch of ImageNet at batch 1024)."""


class CropConfig(Section):
    global_size: int = Field(224, ge=16)
    local_size: int = Field(96, ge=16)
    n_local: int = Field(10, ge=0)
    global_scale: tuple[float, float] = (0.14, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.4)
    rotate90: bool = True
    """Cytology has no canonical orientation: random 90-degree rotations and vertical flips."""
    color_jitter: float = Field(0.8, ge=0, le=1)
    """Probability of RGB colour jitter (brightness 0.4, contrast 0.4, saturation 0.2, hue 0.1)."""
    jitter_strength: float = Field(1.0, ge=0)
    hed_jitter: float = Field(0.0, ge=0, le=1)
    """Probability of stain-space (HED) jitter, which perturbs stain amounts instead of RGB."""
    hed_sigma: float = Field(0.05, ge=0)
    grayscale: float = Field(0.2, ge=0, le=1)
    blur: tuple[float, float, float] = (1.0, 0.1, 0.5)
    """Gaussian blur probability: first global, second global, locals."""
    solarize: float = Field(0.2, ge=0, le=1)
    """Solarisation probability of the second global crop."""


class MaskConfig(Section):
    shape: Literal["block", "random"] = "block"
    ratio: list[float] = [0.0, 0.3]
    """Mean prediction ratios; each global crop draws one of them (reference: half unmasked)."""
    ratio_var: list[float] = [0.0, 0.2]
    """Half-width of the uniform draw around each mean (0.3 +- 0.2 = U(0.1, 0.5))."""
    aspect: tuple[float, float] = (0.3, 1 / 0.3)
    min_block: int | None = None
    """Smallest block in tokens; ``null`` = (min(grid side) // 3)^2, i.e. 16 on a 14x14 grid."""

    @model_validator(mode="after")
    def _same_length(self):
        if len(self.ratio) != len(self.ratio_var):
            raise ValueError("mask.ratio and mask.ratio_var must have the same length")
        return self


class LossConfig(Section):
    lambda_cls: float = 1.0
    lambda_patch: float = 1.0
    student_temp: float = 0.1
    teacher_temp: float = 0.04
    warmup_teacher_temp: float = 0.04
    teacher_patch_temp: float = 0.07
    warmup_teacher_patch_temp: float = 0.04
    warmup_teacher_temp_iters: int = Field(37500, ge=0)
    """Reference: 30 epochs of ImageNet at batch 1024."""
    center_momentum: float = Field(0.9, ge=0, le=1)
    centering: Literal["ema", "sinkhorn_knopp"] = "ema"
    """How teacher logits become targets: softmax after subtracting an EMA centre (DINO, iBOT), or
    Sinkhorn-Knopp equipartition over the batch (DINOv2; with method ``ibot`` a departure from the
    reference, docs/dinov2_reference.md)."""
    sinkhorn_iterations: int = Field(3, ge=1)
    koleo_weight: float = Field(0.0, ge=0)
    """Weight of the KoLeo regulariser on the student backbone's [CLS] of each global view (DINOv2: 0.1;
    with method ``ibot`` a departure from the reference, docs/dinov2_reference.md)."""


class OptimConfig(Section):
    base_lr: float = Field(5e-4, gt=0)
    """Learning rate at the reference batch of ``lr_scaling``, scaled to the total batch by its rule."""
    lr_scaling: Literal["linear_wrt_256", "sqrt_wrt_1024"] = "linear_wrt_256"
    """Peak lr = base_lr x total batch / 256 (DINO, iBOT), or base_lr x sqrt(total batch / 1024) (DINOv2)."""
    min_lr: float = Field(1e-6, ge=0)
    warmup_iters: int = Field(12500, ge=0)
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4
    clip_grad: float = Field(3.0, ge=0)
    """Per-parameter gradient norm clip (0 = off)."""
    momentum_teacher: float = Field(0.996, ge=0, le=1)
    momentum_teacher_end: float = Field(1.0, ge=0, le=1)
    betas: tuple[float, float] = (0.9, 0.999)
    decay_tokens: bool = True
    """Weight decay on cls_token, pos_embed and mask_token (reference: yes; only biases and 1-D
    parameters are exempt there)."""


class TrainConfig(Section):
    iterations: int = Field(125000, ge=1)
    """Optimisation steps; every schedule is in iterations."""
    batch_size: int = Field(64, ge=1)
    """Images per process per step."""
    seed: int = 0
    save_every: int = Field(1000, ge=1)
    log_every: int = Field(10, ge=1)
    knn_every: int = Field(0, ge=0)
    """Run the kNN monitor every this many iterations (0 = off)."""
    knn_data: str | None = None
    """A labelled folder / manifest / prepared dataset for the kNN monitor (e.g. Herlev)."""
    knn_label: str = "label"
    max_minutes: float | None = None
    """Stop (with a checkpoint) after this much wall time; the run resumes where it stopped. With several
    processes the check is made at log lines (every ``log_every`` iterations)."""
    stop_at: int | None = Field(None, ge=1)
    """Stop (with a checkpoint) once this iteration is done, e.g. to run a long schedule in pieces; the
    same command without it resumes. Schedules still count to ``iterations``."""


class DataConfig(Section):
    views: Literal["auto", "device", "pil"] = "auto"
    """Where the multi-crop views are made: ``device`` decodes the pool once and makes every view of a batch
    with batched tensor operations on the training device; ``pil`` (the reference path) augments image by
    image in loader processes. ``auto``: device on CUDA and on CPU (faster on both:
    benchmarks/view_throughput.py)."""
    cache_side: int | None = Field(None, ge=16)
    """Device views: samples larger than this are reduced to it once when decoded (aspect kept);
    ``null`` = twice the global crop size."""
    cache_budget_gb: float | None = Field(None, gt=0)
    """Device views: above this size the decoded pool is memory-mapped in RUN/cache instead of held in
    memory; ``null`` = half of the memory available at start."""
    weights: list[float] | None = None
    """Sampling weight of each --data source (default: proportional to its size)."""
    num_workers: int = Field(1, ge=0)
    cache_sources: int = Field(16, ge=0)
    """Open images/slides kept per worker (slides are expensive to open)."""
    cells: list[bool] | None = None
    """Per --data source, in order (as ``weights``): a folder prepared with ``--cells`` gives one sample per
    detected cell, the square ``extract --mode cells`` reads (``cytofm.data.cells.crops``), instead of its
    patches. ``null``: patches everywhere."""
    cell_crop_um: float | None = Field(None, gt=0)
    """Side of a cell's square in micrometres; ``null`` = twice the typical diameter the folder was
    prepared with (as ``extract --mode cells``)."""
    plane_views: bool = True
    """Z-stacks prepared with ``--z all``: one sample per region, each of its views made from a plane drawn
    at random (focus as an augmentation: a cell is the same cell in every plane); ``false``: every plane
    its own sample."""


class RuntimeConfig(Section):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    fused_attn: Literal["auto", "on", "off"] = "auto"
    """PyTorch fused attention: on for GPUs; off on CPU where plain matmuls are faster in bf16."""
    threads: int = Field(0, ge=0)
    """CPU threads (0 = PyTorch default)."""
    compile: bool = False
    """``torch.compile`` the student's and teacher's ViT backbones (in place: checkpoints unchanged). One
    graph per crop size and network, compiled at first use (about a minute each on 2 CPU cores); on this
    CPU it gains a few per cent (benchmarks/backbone_precision_cpu.py), so it is off; meant for GPUs,
    where its gain has not been measured yet."""


class PretrainConfig(Section):
    method: str = "ibot"
    """Self-supervised objective, a name of ``cytofm.ssl.method_registry.METHODS``: iBOT, or DINOv2 (iBOT +
    KoLeo + Sinkhorn-Knopp centring + separate heads; its settings come with the ``dinov2_*`` presets)."""
    model: ModelConfig = ModelConfig()
    head: HeadConfig = HeadConfig()
    crops: CropConfig = CropConfig()
    mask: MaskConfig = MaskConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    data: DataConfig = DataConfig()
    runtime: RuntimeConfig = RuntimeConfig()

    @field_validator("method")
    @classmethod
    def _registered_method(cls, v: str) -> str:
        return METHODS.validate(v)

    @model_validator(mode="after")
    def _method_settings(self):
        check_method_settings(self)  # the method's own check, named by its registry line
        return self
