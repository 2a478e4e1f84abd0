"""ABMIL invariances and a bag whose label is decided by one planted instance."""

import numpy as np
import pytest
import torch

from cytofm.mil.abmil import GatedABMIL, pad_bags
from cytofm.mil.config import MILTrainConfig
from cytofm.mil.train import class_weights, predict, train_mil


def model():
    torch.manual_seed(0)
    return GatedABMIL(16, 3, hidden=32, attn_dim=8, dropout=0.0).eval()


def test_instance_order_does_not_matter():
    m, x = model(), torch.randn(1, 7, 16)
    perm = torch.randperm(7)
    la, aa = m(x)
    lb, ab = m(x[:, perm])
    assert torch.allclose(la, lb, atol=1e-6)
    assert torch.allclose(aa[0, perm], ab[0], atol=1e-6)


def test_padding_does_not_matter_and_attention_sums_to_one():
    m = model()
    bags = [torch.randn(5, 16), torch.randn(9, 16), torch.randn(1, 16)]
    x, mask = pad_bags(bags)
    logits, attn = m(x, mask)
    for i, b in enumerate(bags):
        alone, a_alone = m(b.unsqueeze(0))
        assert torch.allclose(logits[i], alone[0], atol=1e-6)
        assert torch.allclose(attn[i, : len(b)], a_alone[0], atol=1e-6)
        assert torch.allclose(attn[i, : len(b)].sum(), torch.tensor(1.0), atol=1e-6)
        assert (attn[i, len(b):] == 0).all()
    # padding values never leak into the result
    x2 = x.clone()
    x2[~mask] = 1e6
    assert torch.allclose(m(x2, mask)[0], logits, atol=1e-6)


def test_class_weights_inverse_frequency():
    w = class_weights(np.array([0, 0, 0, 1]), 3)
    assert torch.allclose(w, torch.tensor([4 / 3 / 2, 4 / 1 / 2, 0.0]))


@pytest.mark.parametrize("scale,offset", [(1.0, 0.0), (500.0, 2000.0)])
def test_planted_instance_decides_label_and_gets_top_attention(scale, offset):
    """Also on features with the scale of handcrafted measurements (areas in thousands), which ABMIL only
    learns because the instances are standardised with training statistics."""
    rng = np.random.default_rng(0)
    d, signal = 32, np.zeros(32, np.float32)
    signal[:4] = 3.0

    def bag(positive: bool):
        n = int(rng.integers(8, 20))
        x = rng.normal(0, 1, (n, d)).astype(np.float32)
        k = int(rng.integers(n))
        if positive:
            x[k] += signal
        return torch.from_numpy(x * scale + offset), k

    train = [bag(i % 2 == 1) for i in range(160)]
    test = [bag(i % 2 == 1) for i in range(60)]
    y_tr = np.array([i % 2 for i in range(160)])
    y_te = np.array([i % 2 for i in range(60)])
    cfg = MILTrainConfig(epochs=40, batch_size=16, lr=2e-3, dropout=0.0, patience=40)
    m = train_mil([b for b, _ in train], y_tr, [b for b, _ in test[:20]], y_te[:20], 2, cfg)
    probs, attn = predict(m, [b for b, _ in test])
    acc = (probs.argmax(1) == y_te).mean()
    top_hits = np.mean([a.argmax() == k for (b, k), a, y in zip(test, attn, y_te, strict=True) if y == 1])
    assert acc >= 0.9, acc
    assert top_hits >= 0.8, top_hits


def test_standardisation_is_part_of_the_model():
    bags = [torch.randn(5, 4) * 100 + 7 for _ in range(6)]
    m = train_mil(bags, np.array([0, 1] * 3), None, None, 2, MILTrainConfig(epochs=1))
    inst = torch.cat(bags)
    torch.testing.assert_close(m.in_mean, inst.mean(0), rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(m.in_std, inst.std(0), rtol=1e-4, atol=1e-3)
    assert "in_mean" in m.state_dict()  # saved and restored with the weights
