"""Datasets: task cards, splits, sources and fetching, the procedural generators, one image collection."""
