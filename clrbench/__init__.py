"""clrbench: SimCLR pretraining and the 12-dataset transfer benchmark of Kornblith et al. 2019."""

__version__ = "0.1.0"
