"""The SimCLR pretraining loop and its two-view batch stream, written once for N processes."""
