"""`cytofm prepare`: foreground, focus, tiling, QA thumbnails, the prepared folder and its shards."""
