"""Evaluation: checkpoints x tasks x protocols -> jobs -> features, probes, fine-tunes -> records."""
