"""cytofm: build and use cytology foundation models.

Stages: ``prepare`` (images, fields and slides -> foreground patches), ``pretrain`` (iBOT),
``extract`` (frozen features into an h5 store), ``probe``/``mil``/``benchmark`` (evaluation),
``heatmap``/``umap``/``report`` (visual evidence).
"""

__version__ = "0.1.0"
