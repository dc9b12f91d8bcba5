"""Encoder weights: the checkpoint schema (writer and reader), export, and adapters for foreign weights."""
