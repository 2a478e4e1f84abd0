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
    s = [torch.tensor([[0.5, 0.1, 0.0]]), torch.tensor([[0.0, 0.3, 0.9]]), torch.tensor([[1.0, 1.0, 0.0]])]  # g1 g2 local
    loss = IBOTLoss(K, K, lambda_patch=0.0)
    out = loss(s, torch.zeros(0, K), (torch.zeros(0, dtype=torch.long),) * 2, t, torch.zeros(2, 1, K), B, 0.04, 0.07)
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
    out = loss([torch.tensor([[0.0, 0, 0, 0], [0.0, 0, 0, 0]]), torch.tensor([[1.0, 0, 0, 0], [1.0, 0, 0, 0]])],
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
    out = loss([z, z], torch.zeros(0, K), (torch.zeros(0, dtype=torch.long),) * 2, [z, z], torch.zeros(4, 1, K), 2, 0.04, 0.07)
    assert out["teacher_entropy"].item() == pytest.approx(math.log(K))
