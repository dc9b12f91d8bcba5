"""Weighted k-nearest-neighbour classification on frozen features: the SSL field's quick check.

References: Wu, Xiong, Yu & Lin, "Unsupervised Feature Learning via Non-Parametric Instance
Discrimination", CVPR 2018, sec. 3.4 (weighted kNN, k = 200, tau = 0.07 there); Caron et al.,
"Emerging Properties in Self-Supervised Vision Transformers" (DINO), ICCV 2021, ``eval_knn.py``
(k = 20, T = 0.07, the defaults here). Features are L2-normalised, similarity is the cosine,
and each of the k most similar bank images votes for its class(es) with weight
exp(similarity / T). The protocol (``knn.yaml``): the bank is train to choose k on val (when the
protocol gives a grid), then train + val to score test, as the linear probe refits on train + val.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from clrbench.eval import metrics

# Elements of one (queries, k, classes) vote tensor of a multi-label batch (~64 MiB in float32).
_VOTE_ELEMENTS = 1 << 24


def _normalised(x: np.ndarray, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32, device=device)
    return torch.nn.functional.normalize(t, dim=1)  # a zero row stays zero (eps in the norm)


def knn_votes(bank_x: np.ndarray, bank_y: np.ndarray, query_x: np.ndarray, ks: Sequence[int], n_classes: int,
              temperature: float = 0.07, weighting: str = "exp", batch: int = 1024,
              device: str | torch.device | None = None) -> dict[int, np.ndarray]:
    """Class votes of the k nearest bank images of every query, for each k in ``ks``.

    Args:
        bank_x: (n, d) features of the labelled images.
        bank_y: (n,) class indices, or (n, C) 0/1 for multi-label tasks.
        query_x: (m, d) features to classify.
        ks: neighbour counts; each is capped at n. One similarity pass serves all of them
            (the k nearest of a larger k's sorted list).
        n_classes: C.
        temperature: T of the weights exp(cosine / T).
        weighting: "exp" (Wu et al. / DINO) or "uniform" (one vote each, scikit-learn's default).
        batch: query rows per similarity matmul.
        device: where the matmuls run; default cpu.

    Returns:
        k -> (m, C) float64 votes, normalised to sum 1 over the k neighbours (a weighted class
        fraction; the arg-max is DINO's prediction, the fraction a score for mAP).
    """
    dev = torch.device(device if device is not None else "cpu")
    bank, query = _normalised(bank_x, dev), _normalised(query_x, dev)
    labels = torch.as_tensor(np.asarray(bank_y), device=dev)
    multilabel = labels.ndim == 2
    caps = {k: min(int(k), len(bank)) for k in ks}
    k_max = max(caps.values())
    if multilabel:  # a (rows, k, C) gather per batch: keep it bounded
        batch = max(1, min(batch, _VOTE_ELEMENTS // max(k_max * n_classes, 1)))
    out: dict[int, list[np.ndarray]] = {k: [] for k in caps}
    for start in range(0, len(query), batch):
        sim, idx = (query[start:start + batch] @ bank.T).topk(k_max, dim=1)  # sorted, most similar first
        # exp: shifted by the row's best similarity first, the same normalised votes without overflow.
        weight = torch.exp((sim - sim[:, :1]) / temperature) if weighting == "exp" else torch.ones_like(sim)
        for k, cap in caps.items():
            w, i = weight[:, :cap], idx[:, :cap]
            if multilabel:
                votes = (labels[i].to(w.dtype) * w[:, :, None]).sum(1)
            else:
                votes = torch.zeros(len(w), n_classes, dtype=w.dtype, device=dev).scatter_add_(1, labels[i].long(), w)
            out[k].append((votes.double() / w.double().sum(1, keepdim=True)).cpu().numpy())
    return {k: np.concatenate(v) if v else np.zeros((0, n_classes)) for k, v in out.items()}


def predictions(votes: np.ndarray, multilabel: bool) -> np.ndarray:
    """Predicted labels from votes: the arg-max class, or every class with half the vote or more."""
    return (votes >= 0.5).astype(int) if multilabel else votes.argmax(1)


def choose_k(curve: list[tuple[int, float]]) -> int:
    """The k with the best val score; ties go to the smaller k (cheaper, listed first by DINO)."""
    best = max(v for _, v in curve)
    return min(k for k, v in curve if v == best)


def run_knn(job: Any) -> Any:
    """One kNN record: k on val (when the protocol has a grid), bank = train + val, scored on test."""
    from clrbench.eval.feature_sets import feature_splits
    from clrbench.eval.jobs import test_stderr
    from clrbench.eval.protocols import KnnProtocol, load_protocol

    t0 = time.time()
    proto = load_protocol(job.protocol)
    assert isinstance(proto, KnnProtocol)
    fs = feature_splits(job, proto)
    card, metric = fs.card, fs.card.metric
    t1 = time.time()
    ks = tuple(proto.k_grid) or (proto.k,)
    opts = {"n_classes": card.num_classes, "temperature": proto.temperature, "weighting": proto.weighting,
            "batch": proto.query_batch, "device": job.device}
    val = knn_votes(fs.x["train"], fs.y["train"], fs.x["val"], ks, **opts)
    curve = [(k, 100.0 * metrics.score(metric, fs.y["val"], val[k], fs.ignore["val"])) for k in ks]
    k = choose_k(curve) if proto.k_grid else proto.k
    bank_x = np.concatenate([fs.x["train"], fs.x["val"]])
    bank_y = np.concatenate([fs.y["train"], fs.y["val"]])
    votes = knn_votes(bank_x, bank_y, fs.x["test"], (k,), **opts)[k]
    value = 100.0 * metrics.score(metric, fs.y["test"], votes, fs.ignore["test"])
    pred = predictions(votes, card.multilabel)
    return fs.record(
        job, proto,
        value=float(value),
        stderr=test_stderr(fs.y["test"], pred, card.multilabel, value),
        hparams={"k": int(k), "temperature": proto.temperature, "weighting": proto.weighting},
        val_curve=[[int(kk), float(v)] for kk, v in curve],
        predictions={"y": fs.y["test"].tolist(), "pred": pred.tolist()},
        timings={"features_s": round(t1 - t0, 3), "knn_s": round(time.time() - t1, 3),
                 "total_s": round(time.time() - t0, 3), "features_cached": fs.cached, "n_test": len(fs.y["test"])},
    )
