"""Self-supervised pretraining: iBOT (Zhou et al., ICLR 2022) on timm Vision Transformers."""
