"""Parity with the iBOT reference (bytedance/ibot), checked against small re-implementations.

The functions named ``ref_*`` below were written for this test from the reference's semantics (its
``iBOTLoss``, the block-mask loop of its ``ImageFolderMask``, its training step in ``main_ibot.py``);
they were read to be understood, not copied. They work on full-grid student patch logits and on
explicit weight-norm parameters, the way the reference does, so they share no code path with ours.
"""

import copy
import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cytofm.ssl.config import MaskConfig
from cytofm.ssl.ibot_loss import IBOTLoss
from cytofm.ssl.masking import block_mask, make_mask
from cytofm.ssl.trainer import SSLTrainer

from tests.helpers import tiny_cfg


# --- the reference, re-implemented -----------------------------------------------------------------
def ref_block_mask(H, W, pred_ratio, rnd: random.Random, aspect=(0.3, 1 / 0.3)):
    """The reference's block-mask loop: a float target, up to 10 tries per block, and a block kept when it
    fits strictly inside the grid and adds 1..remaining new tokens (counted one token at a time)."""
    high = pred_ratio * H * W
    log_ar = (math.log(aspect[0]), math.log(aspect[1]))
    mask = np.zeros((H, W), dtype=bool)
    mask_count = 0
    while mask_count < high:
        max_mask_patches = high - mask_count
        delta = 0
        for _attempt in range(10):
            low = (min(H, W) // 3) ** 2
            target_area = rnd.uniform(low, max_mask_patches)
            ar = math.exp(rnd.uniform(*log_ar))
            h = int(round(math.sqrt(target_area * ar)))
            w = int(round(math.sqrt(target_area / ar)))
            if w < W and h < H:
                top = rnd.randint(0, H - h)
                left = rnd.randint(0, W - w)
                num_masked = mask[top: top + h, left: left + w].sum()
                if 0 < h * w - num_masked <= max_mask_patches:
                    for i in range(top, top + h):
                        for j in range(left, left + w):
                            if not mask[i, j]:
                                mask[i, j] = True
                                delta += 1
            if delta > 0:
                break
        if delta == 0:
            break
        mask_count += delta
    return mask


def ref_pred_ratio(ratios, variances, rnd: random.Random):
    drawn = [rnd.uniform(m - v, m + v) if v > 0 else m for m, v in zip(ratios, variances, strict=True)]
    return rnd.choice(drawn)


def ref_ibot_loss(student_cls, student_patch, teacher_cls, teacher_patch, masks, center, center2,
                  n_global, n_crops, student_temp, temp, temp2, momentum=0.9):
    """student_cls (n_crops*B, K); student_patch (n_global*B, N, K) at every token;
    masks (n_global*B, h, w)."""
    s_cls = (student_cls / student_temp).chunk(n_crops)
    s_patch = (student_patch / student_temp).chunk(n_global)
    t_cls = F.softmax((teacher_cls - center) / temp, dim=-1).detach().chunk(n_global)
    t_patch = F.softmax((teacher_patch - center2) / temp2, dim=-1).detach().chunk(n_global)
    m = masks.chunk(n_global)
    l1, n1, l2, n2 = 0, 0, 0, 0
    for q in range(n_global):
        for v in range(n_crops):
            if v == q:
                loss2 = torch.sum(-t_patch[q] * F.log_softmax(s_patch[v], dim=-1), dim=-1)
                mk = m[v].flatten(-2, -1).float()
                loss2 = torch.sum(loss2 * mk, dim=-1) / mk.sum(dim=-1).clamp(min=1.0)
                l2, n2 = l2 + loss2.mean(), n2 + 1
            else:
                loss1 = torch.sum(-t_cls[q] * F.log_softmax(s_cls[v], dim=-1), dim=-1)
                l1, n1 = l1 + loss1.mean(), n1 + 1
    new_center = center * momentum + teacher_cls.sum(0, keepdim=True) / len(teacher_cls) * (1 - momentum)
    new_center2 = (center2 * momentum
                   + teacher_patch.mean(1).sum(0, keepdim=True) / len(teacher_patch) * (1 - momentum))
    return l1 / n1, l2 / n2, new_center.detach(), new_center2.detach()


def _weight_norm(g, v):
    return g * v / v.norm(dim=1, keepdim=True)


def ref_head(net, x, patch_layer: bool):
    """DINO/iBOT head from explicit parameters: MLP -> L2 normalise -> weight-normalised prototypes;
    ``patch_layer`` picks the separate patch prototypes (the reference's ``last_layer2``)."""
    p = dict(net.head.named_parameters())
    z = F.normalize(net.head.mlp(x), dim=-1)
    layer = "last_layer_patch" if patch_layer else "last_layer"
    w = _weight_norm(p[f"{layer}.parametrizations.weight.original0"],
                     p[f"{layer}.parametrizations.weight.original1"])
    return z @ w.t()


def ref_step(student, teacher, center, center2, optimizer, batch, it, cfg, sched):
    """One iteration of the reference's training loop on full-grid logits."""
    lr, wd = sched["lr"], sched["wd"]
    for i, g in enumerate(optimizer.param_groups):
        g["lr"] = lr
        if i == 0:
            g["weight_decay"] = wd
    crops, masks = batch["crops"], batch["masks"]
    B = crops[0].shape[0]
    glob = torch.cat(crops[:2])
    gmask = masks.reshape(2 * B, *masks.shape[2:])
    with torch.no_grad():
        t_c, t_p = teacher.backbone(glob)
        # the reference's default teacher (shared_head_teacher) has one layer for [CLS] and patches
        t_cls, t_patch = ref_head(teacher, t_c, False), ref_head(teacher, t_p, False)
    s_c, s_p = student.backbone(glob, gmask)
    l_c = student.backbone(torch.cat(crops[2:]))[0]
    s_cls = torch.cat([ref_head(student, s_c, False), ref_head(student, l_c, False)])
    s_patch = ref_head(student, s_p, not cfg.head.shared)
    l1, l2, c1, c2 = ref_ibot_loss(s_cls, s_patch, t_cls, t_patch, gmask, center, center2, 2, len(crops),
                                   cfg.loss.student_temp, sched["teacher_temp"], sched["teacher_patch_temp"],
                                   cfg.loss.center_momentum)
    loss = l1 * cfg.loss.lambda_cls + l2 * cfg.loss.lambda_patch
    optimizer.zero_grad()
    loss.backward()
    for p in student.parameters():  # per-parameter clipping
        if p.grad is not None:
            coef = cfg.optim.clip_grad / (p.grad.norm(2) + 1e-6)
            if coef < 1:
                p.grad.mul_(coef)
    if it < cfg.head.freeze_last_layer_iters:
        for n, p in student.named_parameters():
            if "last_layer" in n:
                p.grad = None
    optimizer.step()
    with torch.no_grad():  # EMA over the parameter names both networks have
        s_named = dict(student.named_parameters())
        for n, pt in teacher.named_parameters():
            pt.mul_(sched["momentum"]).add_((1 - sched["momentum"]) * s_named[n].detach())
    return loss.item(), c1, c2


def ref_param_groups(model, exempt=()):
    reg, not_reg = [], []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (not_reg if n.endswith(".bias") or len(p.shape) == 1 or n.endswith(exempt) else reg).append(p)
    return [{"params": reg}, {"params": not_reg, "weight_decay": 0.0}]


# --- masks -----------------------------------------------------------------------------------------
def test_block_masks_equal_the_reference_draw_for_draw():
    for ratio in (0.1, 0.2, 0.35, 0.5):
        a, b = random.Random(7), random.Random(7)
        for _ in range(300):
            assert np.array_equal(block_mask(14, 14, ratio, a), ref_block_mask(14, 14, ratio, b))


@pytest.mark.parametrize("ratio", [0.2, 0.3, 0.4, 0.5])
def test_block_mask_counts_match_the_reference_over_10000_draws(ratio):
    ours = np.mean([block_mask(14, 14, ratio, random.Random(s)).sum() for s in range(10_000)])
    ref = np.mean([ref_block_mask(14, 14, ratio, random.Random(10_000 + s)).sum() for s in range(10_000)])
    assert abs(ours - ref) <= 0.01 * ref
    if ratio == 0.2:  # the review measured 38.1 tokens for the reference at 0.2 on 14x14 (ours was 35.0)
        assert ours == pytest.approx(38.1, abs=0.5)


def test_prediction_ratio_draws_like_the_reference():
    cfg = MaskConfig(ratio=[0.0, 0.3], ratio_var=[0.0, 0.2])
    a, b = random.Random(3), random.Random(3)
    for _ in range(200):
        ours = make_mask(cfg, 14, 14, a)
        ref = ref_block_mask(14, 14, max(0.0, ref_pred_ratio([0.0, 0.3], [0.0, 0.2], b)), b)
        assert np.array_equal(ours, ref)


# --- loss ------------------------------------------------------------------------------------------
def test_loss_equals_reference_on_full_grid_logits_through_our_index_order():
    torch.manual_seed(0)
    B, n_local, h, K = 3, 2, 4, 32
    N = h * h
    masks = torch.rand(2 * B, h, h) < 0.4
    masks[1] = False  # an image with nothing masked contributes 0 but still counts
    s_cls = torch.randn((2 + n_local) * B, K) * 3
    s_patch_full = torch.randn(2 * B, N, K) * 3
    t_cls, t_patch = torch.randn(2 * B, K) * 3, torch.randn(2 * B, N, K) * 3
    c0, c20 = torch.randn(1, K) * 0.1, torch.randn(1, 1, K) * 0.1
    l1, l2, c1, c2 = ref_ibot_loss(s_cls, s_patch_full, t_cls, t_patch, masks, c0, c20, 2, 2 + n_local, 0.1,
                                   0.05, 0.07)

    loss = IBOTLoss(K, K, 2, 0.1, 0.9)
    loss.center.copy_(c0)
    loss.center_patch.copy_(c20)
    img, tok = masks.reshape(2 * B, -1).nonzero(as_tuple=True)  # the order IBOTNet gathers masked tokens in
    out = loss(list(s_cls.chunk(2 + n_local)), s_patch_full[img, tok], (img, tok), list(t_cls.chunk(2)),
               t_patch, B, 0.05, 0.07)
    assert out["loss_cls"].item() == pytest.approx(l1.item(), abs=1e-5)
    assert out["loss_patch"].item() == pytest.approx(l2.item(), abs=1e-5)
    assert out["loss"].item() == pytest.approx((l1 + l2).item(), abs=1e-5)
    assert (torch.allclose(loss.center, c1, atol=1e-6)
            and torch.allclose(loss.center_patch, c2.reshape(1, 1, K), atol=1e-6))


# --- heads and a whole training step ---------------------------------------------------------------
REF = ["head.shared=false", "head.shared_teacher=true", "head.norm_last_layer=false",
       "optim.decay_tokens=true", "model.mask_token_init=zeros", "model.drop_path=0.0",
       "crops.global_size=64", "crops.local_size=32",
       "train.batch_size=3", "mask.ratio=[0.0, 0.3]", "mask.ratio_var=[0.0, 0.2]", "train.iterations=3",
       "optim.momentum_teacher=0.9", "loss.teacher_temp=0.07",
       # an update, a weight-decay group or the EMA pairing must show above the tolerance, while Adam's first
       # (sign-like) steps must not amplify float32 rounding in gradients that are zero in exact arithmetic
       "optim.warmup_iters=0", "optim.base_lr=0.05", "optim.weight_decay=50.0", "optim.weight_decay_end=50.0"]


def test_shared_teacher_head_follows_the_student_cls_layer_and_starts_from_its_patch_layer(
        images, tmp_path):
    t = SSLTrainer(tiny_cfg(*REF), [str(images)], tmp_path / "r", log=lambda m: None)
    assert t.student.head.last_layer_patch is not None and t.teacher.head.last_layer_patch is None
    s, te = t.student.head, t.teacher.head
    assert torch.equal(te.last_layer.parametrizations.weight.original1,
                       s.last_layer_patch.parametrizations.weight.original1)
    assert not torch.equal(te.last_layer.parametrizations.weight.original1,
                           s.last_layer.parametrizations.weight.original1)
    assert torch.count_nonzero(t.student.backbone.mask_token) == 0  # zeros, as the reference
    # the teacher's patch logits come from the one (shared) layer
    x = torch.randn(5, t.student.backbone.embed_dim)
    assert torch.equal(te.forward_patch(x), te(x))


def test_param_groups_match_the_reference(images, tmp_path):
    from cytofm.ssl.optim import param_groups

    t = SSLTrainer(tiny_cfg(*REF), [str(images)], tmp_path / "r", log=lambda m: None)
    ours = [{id(p) for p in g["params"]} for g in param_groups(t.student, decay_tokens=True)]
    ref = [{id(p) for p in g["params"]} for g in ref_param_groups(t.student)]
    assert ours == ref
    names = {id(p): n for n, p in t.student.named_parameters()}
    assert ({"backbone.vit.cls_token", "backbone.vit.pos_embed", "backbone.mask_token"}
            <= {names[i] for i in ours[0]})


def _ref_losses(t, cfg, exempt=()):
    student, teacher = copy.deepcopy(t.student), copy.deepcopy(t.teacher)
    for p in teacher.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(ref_param_groups(student, exempt), lr=0.0, betas=tuple(cfg.optim.betas))
    c1, c2 = t.loss_fn.center.clone(), t.loss_fn.center_patch.clone().reshape(1, -1)
    losses = []
    for it in range(cfg.train.iterations):
        loss, c1, c2 = ref_step(student, teacher, c1, c2, opt, t.batches[it], it, cfg, t.sched.at(it))
        losses.append(loss)
    return losses, c1


def test_three_training_steps_equal_the_reference_step(images, tmp_path):
    cfg = tiny_cfg(*REF)
    t = SSLTrainer(cfg, [str(images)], tmp_path / "r", log=lambda m: None)
    ref, center = _ref_losses(t, cfg)
    # the same step with the learned tokens exempt from weight decay (a cytology-preset departure): the
    # comparison below would see it, so it can fail
    other, _ = _ref_losses(t, cfg, exempt=("cls_token", "pos_embed", "mask_token"))
    assert abs(other[-1] - ref[-1]) > 1e-4
    masked = torch.cat([t.batches[it]["masks"].reshape(6, -1).any(1) for it in range(cfg.train.iterations)])
    assert masked.any() and not masked.all()  # images with and without masked tokens
    for it in range(cfg.train.iterations):
        assert t.step(t.batches[it], it)["loss"] == pytest.approx(ref[it], abs=1e-5), it
    assert torch.allclose(t.loss_fn.center, center, atol=1e-6)
