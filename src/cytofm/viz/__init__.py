"""Visual evidence: ViT attention maps, MIL heatmaps, localisation scores, 2-D embeddings, HTML report."""
