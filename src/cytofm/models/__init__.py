"""Encoders and their weights."""
