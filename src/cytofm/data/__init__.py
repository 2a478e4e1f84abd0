"""Data preparation: reading images and slides, finding cytology foreground, tiling."""
