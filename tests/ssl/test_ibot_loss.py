import math

import pytest
import torch
import torch.nn.functional as F

from cytofm.ssl.ibot_loss import IBOTLoss


def ce(t_logits, s_logits, tt, st, center=0.0):
    """Hand-written cross-entropy of one teacher row against one student row."""
    t = [math.exp((a - center) / tt) for a in t_logits]
    z = sum(t)
    t = [a / z for a in t]
    s = [b / st for b in s_logits]
    lse = math.log(sum(math.exp(b) for b in s))
    return -sum(ti * (si - lse) for ti, si in zip(t, s, strict=True))


def test_cls_loss_hand_computed_excludes_same_view_pairs():
    torch.manual_seed(0)
    K, B = 3, 1
    t = [torch.tensor([[1.0, 0.0, -1.0]]), torch.tensor([[0.0, 2.0, 0.0]])]
    s = [torch.tensor([[0.5, 0.1, 0.0]]), torch.tensor([[0.0, 0.3, 0.9]]),
         torch.tensor([[1.0, 1.0, 0.0]])]  # g1 g2 local
    loss = IBOTLoss(K, K, lambda_patch=0.0)
    out = loss(s, torch.zeros(0, K), (torch.zeros(0, dtype=torch.long),) * 2, t, torch.zeros(2, 1, K), B,
               0.04, 0.07)
    pairs = [(0, 1), (0, 2), (1, 0), (1, 2)]  # (teacher view q, student view v), v != q
    want = sum(ce(t[q][0].tolist(), s[v][0].tolist(), 0.04, 0.1) for q, v in pairs) / 4
    assert out["loss_cls"].item() == pytest.approx(want, rel=1e-5)
    assert out["loss"].item() == pytest.approx(want, rel=1e-5)


def test_patch_loss_masked_average_per_image():
    K, B, N = 3, 2, 4
    torch.manual_seed(1)
    t_patch = torch.randn(2 * B, N, K)
    # image 0 (view 0) has 1 masked token, image 1 has 3, image 2 none, image 3 has 2
    masked = {0: [2], 1: [0, 1, 3], 2: [], 3: [1, 2]}
    img = torch.tensor([i for i, toks in masked.items() for _ in toks])
    tok = torch.tensor([j for toks in masked.values() for j in toks])
    s_patch = torch.randn(len(img), K)
    cls = [torch.zeros(B, K)] * 2
    loss = IBOTLoss(K, K, lambda_cls=0.0)
    out = loss(cls, s_patch, (img, tok), cls, t_patch, B, 0.04, 0.07)
    per_img = []
    r = 0
    for i in range(2 * B):
        terms = []
        for j in masked[i]:
            terms.append(ce(t_patch[i, j].tolist(), s_patch[r].tolist(), 0.07, 0.1))
            r += 1
        per_img.append(sum(terms) / max(len(terms), 1))  # unmasked image: 0, still counted
    want = ((per_img[0] + per_img[1]) / 2 + (per_img[2] + per_img[3]) / 2) / 2
    assert out["loss_patch"].item() == pytest.approx(want, rel=1e-5)


def test_center_update_and_centering():
    K, B, N = 4, 2, 3
    loss = IBOTLoss(K, K, center_momentum=0.9)
    t_cls = [torch.tensor([[1.0, 2, 3, 4], [3.0, 2, 1, 0]]), torch.tensor([[0.0, 0, 0, 4], [0.0, 0, 4, 0]])]
    t_patch = torch.arange(2 * B * N * K, dtype=torch.float32).reshape(2 * B, N, K)
    s = [torch.zeros(B, K)] * 2
    loss(s, torch.zeros(0, K), (torch.zeros(0, dtype=torch.long),) * 2, t_cls, t_patch, B, 0.04, 0.07)
    batch_mean = torch.cat(t_cls).mean(0)
    assert torch.allclose(loss.center[0], 0.1 * batch_mean)
    assert torch.allclose(loss.center_patch[0, 0], 0.1 * t_patch.reshape(-1, K).mean(0))
    # second call: EMA on top, and the teacher targets are centred with the *old* centre
    c_old = loss.center.clone()
    out = loss([torch.tensor([[0.0, 0, 0, 0], [0.0, 0, 0, 0]]),
                torch.tensor([[1.0, 0, 0, 0], [1.0, 0, 0, 0]])],
               torch.zeros(0, K), (torch.zeros(0, dtype=torch.long),) * 2, t_cls, t_patch, B, 0.04, 0.07)
    assert torch.allclose(loss.center[0], 0.9 * c_old[0] + 0.1 * batch_mean)
    s2 = [[[0.0] * 4] * 2, [[1.0, 0, 0, 0]] * 2]
    tq = [F.softmax((t - c_old) / 0.04, -1) for t in t_cls]
    sv = [F.log_softmax(torch.tensor(x) / 0.1, -1) for x in s2]
    want = sum((-tq[q] * sv[v]).sum(-1).mean() for q, v in ((0, 1), (1, 0))) / 2
    assert out["loss_cls"].item() == pytest.approx(want.item(), rel=1e-5)


def test_entropy_is_reported_in_nats():
    K = 8
    loss = IBOTLoss(K, K)
    z = torch.zeros(2, K)
    out = loss([z, z], torch.zeros(0, K), (torch.zeros(0, dtype=torch.long),) * 2, [z, z],
               torch.zeros(4, 1, K), 2, 0.04, 0.07)
    assert out["teacher_entropy"].item() == pytest.approx(math.log(K))


def test_masked_only_teacher_path_equals_the_full_grid_loss_and_centres():
    """The iBOT method makes K teacher logits only at masked tokens and the centre from the summed
    embeddings; loss and both centres equal the full-grid computation (fp32)."""
    import copy

    from cytofm.ssl.methods import Views, build_method

    from tests.helpers import tiny_cfg

    m = build_method(tiny_cfg("head.out_dim=32"))
    torch.manual_seed(0)
    g = torch.randn(4, 3, 32, 32)
    masks = torch.tensor([[[1, 0], [0, 1]], [[0, 0], [0, 0]], [[0, 1], [1, 1]], [[1, 0], [0, 0]]]).bool()
    views = Views(g, masks, torch.randn(4, 3, 16, 16), 2)
    sched = {"teacher_temp": 0.04, "teacher_patch_temp": 0.07}
    full = copy.deepcopy(m.criterion)
    full.center.normal_()
    full.center_patch.normal_()
    m.criterion.load_state_dict(full.state_dict())
    torch.manual_seed(1)
    fast = m.losses(m.student, views, sched, torch.autocast("cpu", enabled=False))
    with torch.no_grad():
        t_cls, t_patch, _ = m.teacher(g, None, None, all_patch_tokens=True)
    torch.manual_seed(1)
    s_cls, s_patch, index = m.student(g, masks, views.local_crops)
    ref = full(list(s_cls.chunk(4)), s_patch, index, list(t_cls.chunk(2)), t_patch, 2, 0.04, 0.07)
    assert abs(fast["loss"].item() - ref["loss"].item()) < 1e-5
    assert torch.allclose(m.criterion.center, full.center, atol=1e-6)
    assert torch.allclose(m.criterion.center_patch, full.center_patch, atol=1e-6)


def test_head_last_layer_fp32_runs_the_mlp_in_bf16_and_the_prototypes_in_fp32():
    from cytofm.ssl.config import HeadConfig
    from cytofm.ssl.heads import IBOTHead

    torch.manual_seed(0)
    cfg = HeadConfig(out_dim=64, hidden_dim=32, bottleneck_dim=16, fp32="last_layer")
    head = IBOTHead(24, cfg)
    ref = IBOTHead(24, HeadConfig(out_dim=64, hidden_dim=32, bottleneck_dim=16, fp32=True))
    ref.load_state_dict(head.state_dict())
    seen = {}
    head.mlp[0].register_forward_hook(lambda mod, i, o: seen.update(mlp=o.dtype))  # returns None: output kept
    x = torch.randn(10, 24)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, want = head(x), ref(x)
    assert seen["mlp"] == torch.bfloat16 and out.dtype == torch.float32 and want.dtype == torch.float32
    assert (out - want).abs().max() < 2e-2 and not torch.equal(out, want)  # bf16 MLP: close, not equal
    assert head.patch_logit_sum(head.embed(x)).allclose(head.forward_patch(x).sum(0), atol=1e-4)


def test_sinkhorn_knopp_centring_targets_by_hand():
    """Identical teacher rows: softmax would give (e/(1+e), 1/(1+e)); Sinkhorn-Knopp spreads the batch over
    both prototypes, so every target is (1/2, 1/2). Student (3/4, 1/4) -> CE = ln(16/3)/2 for [CLS] and
    for every masked token; the EMA centres are not used and stay at 0."""
    K, B, N = 2, 2, 3
    one = torch.tensor([1.0, 0.0])
    s_row = torch.tensor([0.1 * math.log(3.0), 0.0])  # softmax at student temperature 0.1: (3/4, 1/4)
    t_cls = [one.expand(B, K).clone() for _ in range(2)]
    s_cls = [s_row.expand(B, K).clone() for _ in range(3)]  # two globals and one local view
    img, tok = torch.arange(2 * B), torch.tensor([0, 2, 1, 1])  # one masked token per image
    t_patch = one.expand(2 * B, N, K).clone()
    s_patch = s_row.expand(2 * B, K).clone()
    want = 0.5 * math.log(16 / 3)
    sk = IBOTLoss(K, K, centering="sinkhorn_knopp")
    out = sk(s_cls, s_patch, (img, tok), t_cls, t_patch, B, 1.0, 1.0)
    assert out["loss_cls"].item() == pytest.approx(want, rel=1e-5)
    assert out["loss_patch"].item() == pytest.approx(want, rel=1e-5)
    assert out["teacher_entropy"].item() == pytest.approx(math.log(2), rel=1e-5)
    assert sk.center.abs().sum() == 0 and sk.center_patch.abs().sum() == 0
    # the same batch, EMA centre 0
    ema = IBOTLoss(K, K)(s_cls, s_patch, (img, tok), t_cls, t_patch, B, 1.0, 1.0)
    p = math.e / (1 + math.e)
    assert ema["loss_cls"].item() == pytest.approx(-(p * math.log(0.75) + (1 - p) * math.log(0.25)), rel=1e-5)
    with pytest.raises(ValueError, match="centering"):
        IBOTLoss(K, K, centering="swav")
