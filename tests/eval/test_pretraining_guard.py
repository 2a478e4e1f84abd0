"""The transductive guard finds evaluation items an encoder saw in pretraining."""

import json

import numpy as np
from PIL import Image

from cytofm.data.provenance.hashing import hash_image
from cytofm.data.provenance.pretraining_record import write_record
from cytofm.eval.pretraining_guard import check_encoder, pretraining_record_for

from tests.helpers import shared_data


def test_record_found_through_the_weights_json_and_items_marked(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for k in range(4):
        Image.fromarray(np.kron(rng.integers(0, 255, (6, 6, 3)), np.ones((8, 8, 1))).astype(np.uint8)).save(
            tmp_path / f"{k}.png")
        paths.append(tmp_path / f"{k}.png")
    hashes = [hash_image(p) for p in paths]
    (tmp_path / "w.safetensors").write_bytes(b"")
    (tmp_path / "w.json").write_text(json.dumps({"architecture": "x", "pretraining_record": "w.rec.csv.gz"}))
    write_record([{"dataset": "d", "relpath": f"{k}.png", "sha256": h.sha256, "phash": h.phash}
                  for k, h in enumerate(hashes[:3])], tmp_path / "w.rec.csv.gz")
    spec = f"cytofm:{tmp_path / 'w.safetensors'}"
    assert pretraining_record_for(spec) == tmp_path / "w.rec.csv.gz"
    assert check_encoder(spec, hashes) == (0.75, "w.rec.csv.gz")
    # another readout of the same weights saw the same images
    assert check_encoder(spec + "#pool=cls+mean", hashes) == (0.75, "w.rec.csv.gz")
    # a re-encoded copy of a recorded image (different bytes, same picture) still counts as seen
    Image.open(paths[3]).save(tmp_path / "3.bmp")
    write_record([{"dataset": "d", "relpath": "3.bmp", "sha256": hash_image(tmp_path / "3.bmp").sha256,
                   "phash": hash_image(tmp_path / "3.bmp").phash}], tmp_path / "w.rec.csv.gz")
    assert check_encoder(spec, hashes) == (0.25, "w.rec.csv.gz")
    assert check_encoder("handcrafted", hashes) == (None, "")
    # a file without a JSON beside it
    assert check_encoder(f"random:{tmp_path / '0.png'}", hashes) == (None, "")


def test_shipped_encoder_saw_the_pretraining_part_and_not_the_evaluation_part():
    """The spec as the zoo resolves `cytofm` (the shipped weights' path), on Herlev cells of both parts."""
    from cytofm.data.provenance.split_files import part_of
    from cytofm.models.shipped import shipped_weights

    herlev = shared_data("herlev")
    spec = f"cytofm:{shipped_weights()}"
    for part, expected in (("pretrain", 1.0), ("eval", 0.0)):
        paths = [herlev / n for n in part_of("herlev", part)[:40]]
        seen, name = check_encoder(spec, [hash_image(p) for p in paths])
        assert (seen, name) == (expected, "cytofm_vit_small_patch16.pretraining.csv.gz"), part
