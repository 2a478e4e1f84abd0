"""A ``#pool=`` suffix on an encoder spec picks the ViT readout (the benchmark compares readouts this way)."""

import pytest
import torch

from cytofm.models.zoo import EncoderError, create_encoder


def test_pool_suffix_builds_that_readout():
    enc = create_encoder("random:vit_tiny_patch16_224#pool=cls+mean")
    assert enc.embed_dim == 2 * 192 and enc.spec.endswith("#pool=cls+mean")
    x = torch.zeros(1, 3, 224, 224)
    with torch.no_grad():
        f = enc.model(x)
        t = enc.model.vit.forward_features(x)
    assert torch.allclose(f, torch.cat([t[:, 0], t[:, 1:].mean(1)], -1))
    assert (create_encoder("random:vit_tiny_patch16_224#pool=cls").spec
            == create_encoder("random:vit_tiny_patch16_224").spec)


@pytest.mark.parametrize("spec,text",
                         [("random:vit_tiny_patch16_224#pool=max", r"valid: cls, mean, cls\+mean, last4"),
                                       ("handcrafted#pool=mean", "ViT encoders only")])
def test_bad_readouts_are_refused(spec, text):
    with pytest.raises(EncoderError, match=text):
        create_encoder(spec)


def test_default_readout_is_a_no_op_for_non_vit_encoders():
    assert create_encoder("handcrafted#pool=cls").name == "handcrafted"


def test_a_registered_readout_is_accepted_by_the_pool_suffix():
    """A readout is one registry line (and its function): ``#pool=`` and ``with_pool`` take it at once."""
    from cytofm.models.readouts import READOUTS

    with READOUTS.temporarily("patches", "cytofm.models.vit_readouts:patch_mean",
                              "the patch mean, under another name", width=1):
        enc = create_encoder("random:vit_tiny_patch16_224#pool=patches")
        assert enc.embed_dim == 192 and enc.spec.endswith("#pool=patches") and enc.info["pool"] == "patches"
        x = torch.zeros(1, 3, 224, 224)
        with torch.no_grad():
            assert torch.allclose(enc.model(x), enc.model.vit.forward_features(x)[:, 1:].mean(1))
        with pytest.raises(EncoderError, match=r"valid: cls, mean, cls\+mean, last4, patches"):
            create_encoder("random:vit_tiny_patch16_224#pool=max")
    assert "patches" not in READOUTS
