"""The MIL models cytofm trains, by name (``model:`` in a benchmark task, ``cytofm mil --model``).

Every model takes ``(B, N, D)`` padded bags with a ``(B, N)`` mask and returns logits and a per-instance
attention that sums to 1 over the real instances (so heatmaps and localisation scores work for all), and
has ``set_standardisation(mean, std)``. Each entry is the model module's ``build(in_dim, n_classes, hidden,
attn_dim, dropout)``, imported when first used (the command line lists the names without importing torch);
``order_invariant`` says whether the model promises the same output for any instance order (the invariance
tests run on the models that do), ``reference`` where it was published, ``attention="quadratic"`` that
the model attends every instance to every other (its step's work grows with the bag's length squared,
which ``cytofm.mil.threads.step_work`` counts).
"""

from __future__ import annotations

from cytofm.utils.registry import Registry

MIL_MODELS: Registry = Registry("MIL model")
MIL_MODELS.add("abmil", "cytofm.mil.abmil:build", "gated attention MIL (Ilse et al., ICML 2018)",
               order_invariant=True, reference="Ilse et al., ICML 2018")
MIL_MODELS.add("transmil", "cytofm.mil.transmil:build",
               "transformer MIL with a pyramid position encoding (Shao et al., NeurIPS 2021)",
               order_invariant=False, reference="Shao et al., NeurIPS 2021", attention="quadratic")
