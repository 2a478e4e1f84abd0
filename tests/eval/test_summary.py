"""The plain-words summary: best encoder per task, and the reference against each other encoder, oriented
reference - other, with "does NOT beat random init" where the paired test does not support it."""

from cytofm.eval.summary import headline


def _row(task, enc, mean, lo, hi, method="linear", n=700):
    return {"task": task, "method": method, "encoder": enc, "n_items": n, "balanced_accuracy_mean": mean,
            "balanced_accuracy_ci_low": lo, "balanced_accuracy_ci_high": hi}


def _comp(task, a, b, diff, lo, hi, holds, p=0.01, method="linear"):
    return {"task": task, "method": method, "a": a, "b": b, "diff": diff, "diff_ci_low": lo,
            "diff_ci_high": hi, "p_holm": p, "holds": holds}


def test_sentences_orientation_and_plain_no():
    rows = [_row("cells", "cytofm", 0.61, 0.58, 0.64),
            _row("cells", "random:vit_small_patch16_224", 0.52, 0.49, 0.55),
            _row("cells", "handcrafted", 0.63, 0.60, 0.66),
            _row("fields", "cytofm", 0.40, 0.30, 0.50, "abmil", 50),
            _row("fields", "random:vit_small_patch16_224", 0.45, 0.35, 0.55, "abmil", 50)]
    comps = [  # the benchmark writes "other vs first": A = other, B = the reference
        _comp("cells", "random:vit_small_patch16_224", "cytofm", -0.09, -0.12, -0.06, True, 0.002),
        _comp("cells", "handcrafted", "cytofm", 0.02, -0.01, 0.05, False, 0.4),
        # no reference: left out
        _comp("cells", "handcrafted", "random:vit_small_patch16_224", 0.11, 0.08, 0.14, True),
        _comp("fields", "random:vit_small_patch16_224", "cytofm", 0.05, -0.10, 0.20, False, 1.0, "abmil"),
    ]
    cells, fields = headline(rows, comps, "cytofm")
    assert cells == ("cells (linear, 700 items, balanced accuracy): best handcrafted 0.630 [0.600, 0.660]. "
                     "cytofm beats random:vit_small_patch16_224 by +0.090 [+0.060, +0.120] (Holm p 0.002). "
                     "No difference established between cytofm and handcrafted: -0.020 [-0.050, +0.010] "
                     "(Holm p 0.4).")
    assert fields.startswith("fields (abmil, 50 items, balanced accuracy): "
                             "best random:vit_small_patch16_224 0.450")
    assert "cytofm does NOT beat random init here: -0.050 [-0.200, +0.100]" in fields


def test_a_significant_loss_is_said_as_such():
    rows = [_row("t", "cytofm", 0.5, 0.45, 0.55), _row("t", "handcrafted", 0.7, 0.65, 0.75)]
    (line,) = headline(rows, [_comp("t", "cytofm", "handcrafted", -0.2, -0.25, -0.15, True, 0.001)], "cytofm")
    assert "cytofm is WORSE than handcrafted: -0.200 [-0.250, -0.150] (Holm p 0.001)." in line
