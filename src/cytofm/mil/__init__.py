"""Multiple-instance learning on frozen features."""
