"""The encoder shipped in the package loads through the zoo and as a plain timm model."""

import json

import numpy as np
import timm
import torch
from safetensors.torch import load_file

from cytofm.models.shipped import shipped_weights
from cytofm.models.zoo import create_encoder


def test_shipped_encoder_is_the_default_and_a_timm_model():
    st = shipped_weights()
    meta = json.loads(st.with_suffix(".json").read_text())
    assert st.stat().st_size < 50e6 and meta["architecture"] == "vit_small_patch16_224"
    state = load_file(st)
    assert all(v.dtype == torch.float16 for v in state.values())
    model = timm.create_model(meta["architecture"], **meta["model_args"]).eval()
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    enc = create_encoder("cytofm")
    assert enc.embed_dim == 384 and enc.input_size == 224
    rgb = np.random.default_rng(0).integers(0, 255, (224, 224, 3), dtype=np.uint8)
    x = enc.preprocess(rgb)[None]
    with torch.no_grad():
        a = enc.model(x)
        b = model.forward_features(x)[:, 0]
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert a.std() > 0.05  # trained weights, not zeros
