"""Where an image came from and where it may go: content hashes, near-duplicates, fixed splits, pretraining
records."""
