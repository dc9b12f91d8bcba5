"""Studies: SimCLR's own ablations (Chen et al. 2020, arXiv 2002.05709) as grids of trials.

A trial is one pretraining run (a base recipe plus the overrides of its grid point) and its
linear-probe records; a study plans its trials (:mod:`.grids`, :mod:`.budget`), runs the
missing ones through the executor (:mod:`.runner`, :mod:`.trial`), and draws them as the
paper does (:mod:`.results`, :mod:`.plots`): Fig. 5 (augmentation pairs), Table 5
(temperature, with and without l2 normalisation), Fig. 9 (batch size x epochs) and Fig. 8
(projection head, h vs g(h)).
"""
