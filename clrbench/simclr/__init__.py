"""SimCLR pretraining: encoder, head, NT-Xent, LARS, schedules and the loop (S-v1)."""
