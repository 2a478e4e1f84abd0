"""Self-supervised pretraining of timm Vision Transformers: iBOT (Zhou et al., ICLR 2022) and DINOv2
(Oquab et al., TMLR 2024), and the methods registered beside them (``ssl/method_registry.py``)."""
