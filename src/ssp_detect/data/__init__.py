"""Data: decoding, simple-patch selection, preprocessing, layouts, datasets, degradations."""
