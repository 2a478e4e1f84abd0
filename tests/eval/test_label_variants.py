"""Labels that differ only by case or surrounding spaces are never made separate classes silently: the
case variants are named with their counts, the spaced ones said to be read without their spaces."""

import numpy as np

from cytofm.eval.labelled_set import load_labelled_store
from cytofm.features.store import write_item
from cytofm.utils.io import write_csv


def test_case_and_space_variants_are_warned(tmp_path):
    labels = ["normal", "normal", "NORMAL", "Blast ", "Blast", "Blast"]
    rows = []
    for i, lab in enumerate(labels):
        write_item(tmp_path / "features" / f"i{i}.h5", np.zeros((1, 4), np.float32), np.zeros((1, 2)),
                   {"encoder": "test"})
        rows.append({"id": f"i{i}", "path": "", "h5": f"features/i{i}.h5", "n_instances": 1, "label": lab})
    write_csv(tmp_path / "manifest.csv", rows)
    said = []
    data = load_labelled_store(str(tmp_path), "label", log=said.append)
    assert data.classes == ["Blast", "NORMAL", "normal"]
    assert said == [
        f"warning: {tmp_path}/manifest.csv: labels in 'label' that differ only by case are separate classes: "
        "'NORMAL' (1) vs 'normal' (2); write them alike if they are one class",
        f"warning: {tmp_path}/manifest.csv: labels in 'label' with surrounding spaces are read without them: "
        "'Blast ' as 'Blast' (1)"]
