import numpy as np
import pytest
import timm
import torch

from cytofm.models.encoder import Encoder, ViTFeatures
from cytofm.viz.vit_attention import attention_map, cls_attention, tile_positions


def _tiny(reg=0):
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", img_size=64, embed_dim=24, depth=2, num_heads=3,
                             num_classes=0, reg_tokens=reg, no_embed_class=bool(reg)).eval()


@pytest.mark.parametrize("reg", [0, 2])
def test_cls_attention_equals_hand_computed_softmax(reg):
    vit = _tiny(reg)
    x = torch.randn(2, 3, 64, 64)
    seen = {}
    vit.blocks[-1].norm1.register_forward_hook(lambda m, i, o: seen.__setitem__("h", o.detach()))
    got = cls_attention(ViTFeatures(vit), x)
    h = seen["h"]  # input of the last attention: (B, N, C)
    attn = vit.blocks[-1].attn
    B, N, C = h.shape
    nh, hd = attn.num_heads, C // attn.num_heads
    qkv = h @ attn.qkv.weight.T + attn.qkv.bias
    q, k = qkv[..., :C], qkv[..., C:2 * C]
    want = torch.zeros(B, nh, N - 1 - reg)
    for b in range(B):
        for j in range(nh):
            qj, kj = q[b, :, j * hd:(j + 1) * hd], k[b, :, j * hd:(j + 1) * hd]
            logits = (qj[0] @ kj.T) / hd ** 0.5  # the [CLS] query against every key
            p = torch.exp(logits - logits.max())
            want[b, j] = (p / p.sum())[1 + reg:]
    assert got.shape == (2, nh, 4, 4)
    torch.testing.assert_close(got.reshape(B, nh, -1), want, atol=1e-5, rtol=1e-4)
    # rows sum to one over all keys, so the patch part is below one by the prefix tokens' share
    assert (got.sum((-2, -1)) < 1).all() and (got.sum((-2, -1)) > 0).all()


def test_fused_attention_restored_and_output_unchanged():
    vit = _tiny()
    vit.blocks[-1].attn.fused_attn = True
    x = torch.randn(1, 3, 64, 64)
    before = vit.forward_features(x)
    cls_attention(vit, x)
    assert vit.blocks[-1].attn.fused_attn is True
    torch.testing.assert_close(vit.forward_features(x), before)


def test_non_vit_refused():
    with pytest.raises(ValueError, match="timm ViT"):
        cls_attention(torch.nn.Linear(3, 3), torch.zeros(1, 3))


def test_tile_positions_cover_and_stay_inside():
    assert tile_positions(640, 224) == [0, 224, 416]
    assert tile_positions(448, 224) == [0, 224]
    assert tile_positions(100, 224) == [0]


def test_attention_map_cells_and_tiled_fields():
    enc = Encoder("t", "t", ViTFeatures(_tiny()), 24, 64)
    cell = np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    heads, mean = attention_map(enc, cell)
    assert heads.shape == (3, 40, 40) and mean.shape == (40, 40)
    np.testing.assert_allclose(heads.sum((1, 2)), 1.0, rtol=1e-4)  # resized whole: one distribution per head
    field = np.random.default_rng(1).integers(0, 255, (150, 200, 3), dtype=np.uint8)
    heads, mean = attention_map(enc, field)  # larger than twice the input: tiled at native resolution
    assert mean.shape == (150, 200) and np.isfinite(mean).all() and (mean > 0).all()
