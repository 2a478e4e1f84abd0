"""Every registered MIL model keeps the promises of the interface (padding never matters, attention sums to
1 over real instances, any bag size); order invariance is tested on the models that promise it, and
TransMIL's order sensitivity (its position encoding) on TransMIL."""

import numpy as np
import pytest
import torch

from cytofm.mil.abmil import pad_bags
from cytofm.mil.config import MILTrainConfig
from cytofm.mil.registry import MIL_MODELS
from cytofm.mil.train import predict, train_mil


def build(name):
    torch.manual_seed(0)
    return MIL_MODELS.get(name)(16, 3, 32, 8, 0.0).eval()


@pytest.mark.parametrize("name", list(MIL_MODELS))
def test_padding_never_matters_and_attention_sums_to_one(name):
    m = build(name)
    bags = [torch.randn(5, 16), torch.randn(9, 16), torch.randn(1, 16), torch.randn(16, 16)]
    x, mask = pad_bags(bags)
    with torch.no_grad():
        logits, attn = m(x, mask)
        for i, b in enumerate(bags):
            alone, a_alone = m(b.unsqueeze(0))
            assert torch.allclose(logits[i], alone[0], atol=1e-5)
            assert torch.allclose(attn[i, : len(b)], a_alone[0], atol=1e-5)
            assert torch.allclose(attn[i, : len(b)].sum(), torch.tensor(1.0), atol=1e-5)
            assert (attn[i, len(b):] == 0).all()
        x2 = x.clone()
        x2[~mask] = 1e6
        assert torch.allclose(m(x2, mask)[0], logits, atol=1e-5)


@pytest.mark.parametrize("name", [n for n in MIL_MODELS if MIL_MODELS.entry(n).order_invariant])
def test_order_invariance_where_promised(name):
    m, x, perm = build(name), torch.randn(1, 7, 16), torch.randperm(7)
    with torch.no_grad():
        (la, aa), (lb, ab) = m(x), m(x[:, perm])
    assert torch.allclose(la, lb, atol=1e-6) and torch.allclose(aa[0, perm], ab[0], atol=1e-6)


def test_transmil_is_order_sensitive_by_design():
    """PPEG folds the instances into a grid and convolves it: another order is another input."""
    m, x = build("transmil"), torch.randn(1, 9, 16)
    with torch.no_grad():
        a, b = m(x)[0], m(x[:, torch.tensor([8, 7, 6, 5, 4, 3, 2, 1, 0])])[0]
        assert not torch.allclose(a, b, atol=1e-4)
        m.ppeg.proj7.weight.zero_(), m.ppeg.proj5.weight.zero_(), m.ppeg.proj3.weight.zero_()
        m.ppeg.proj7.bias.zero_(), m.ppeg.proj5.bias.zero_(), m.ppeg.proj3.bias.zero_()
        # without the position encoding, a square bag is a set again (attention alone is
        # permutation-equivariant)
        assert torch.allclose(m(x)[0], m(x[:, torch.randperm(9)])[0], atol=1e-5)


@pytest.mark.parametrize("name", list(MIL_MODELS))
def test_every_model_learns_a_planted_instance(name):
    rng = np.random.default_rng(0)
    d, signal = 32, np.zeros(32, np.float32)
    signal[:4] = 3.0

    def bag(positive):
        n = int(rng.integers(8, 20))
        x = rng.normal(0, 1, (n, d)).astype(np.float32)
        if positive:
            x[int(rng.integers(n))] += signal
        return torch.from_numpy(x)

    train = [bag(i % 2 == 1) for i in range(160)]
    test = [bag(i % 2 == 1) for i in range(60)]
    y_tr, y_te = np.arange(160) % 2, np.arange(60) % 2
    # measured: 1.0 (TransMIL), 0.97 (ABMIL)
    cfg = MILTrainConfig(epochs=15, batch_size=16, lr=1e-3, dropout=0.0, patience=30, model=name)
    m = train_mil(train, y_tr, test[:20], y_te[:20], 2, cfg)
    probs, _ = predict(m, test)
    assert (probs.argmax(1) == y_te).mean() >= 0.85


def test_transmil_attention_counts_the_repeated_tokens():
    """A bag of 5 is filled to 9 tokens with copies of the first 4: its attention equals that of the explicit
    9-instance bag with each copy's share folded onto the instance it repeats."""
    m, x = build("transmil"), torch.randn(5, 16)
    with torch.no_grad():
        _, a5 = m(x.unsqueeze(0))
        _, a9 = m(torch.cat([x, x[:4]]).unsqueeze(0))
    folded = a9[0, :5].clone()
    folded[:4] += a9[0, 5:]
    assert torch.allclose(a5[0], folded, atol=1e-5) and not torch.allclose(a5[0], a9[0, :5] / a9[0, :5].sum())
