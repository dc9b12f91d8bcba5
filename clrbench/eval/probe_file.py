"""``clrbench probe FEATURES.npz``: the linear probe on features computed anywhere."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from clrbench.eval.probe import ProbeData, ProbeOptions, ProbeResult, fit_probe
from clrbench.eval.probe_input import PROBE_KEYS, ProbeInputError, check_layout, check_values


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Read and check the features file of ``clrbench probe``.

    Args:
        path: an .npz with train_x, train_y, val_x, val_y, test_x, test_y (x: (n, d) features;
            y: (n,) class indices, or (n, C) 0/1 for map11) and optionally val_ignore, test_ignore.

    Returns:
        The arrays by name, all checked (shapes, finiteness, label values).
    """
    p = Path(path)
    if not p.is_file():
        raise ProbeInputError(f"{p} is a folder; pass the .npz file." if p.is_dir() else f"No such file: {p}.")
    try:
        z = np.load(p, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError(p)  # a lone .npy array
        with z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile):
        raise ProbeInputError(f"{p} is not a readable .npz archive (write one with numpy.savez).") from None
    missing = [k for k in PROBE_KEYS if k not in arrays]
    if missing:
        raise ProbeInputError(f"{p} lacks {', '.join(missing)}; a probe file holds {', '.join(PROBE_KEYS)}.")
    metric = "map11" if arrays["train_y"].ndim == 2 else "top1"
    check_layout({k: arrays[k].shape for k in PROBE_KEYS}, metric)
    for k in PROBE_KEYS:
        check_values(k, arrays[k])
    return arrays


def probe_npz(path: str | Path, metric: str | None = None, device: str | torch.device | None = None) -> ProbeResult:
    """``clrbench probe FEATURES.npz``: load, check and probe a features file.

    Args:
        path: the .npz (see load_npz).
        metric: default "top1" for 1-D labels, "map11" for (n, C) labels.
        device: torch device of the solve; default cpu.
    """
    a = load_npz(path)
    metric = metric or ("map11" if a["train_y"].ndim == 2 else "top1")
    if a["train_y"].ndim == 1:
        unseen = sorted(set(np.unique(a["test_y"]).tolist()) - set(np.unique(a["train_y"]).tolist()))
        if unseen:  # a probe can never predict a class it was not trained on
            from clrbench.log import logger

            shown = ", ".join(map(str, unseen[:8])) + (" ..." if len(unseen) > 8 else "")
            logger.warning(f"warning: test labels {shown} never occur in train_y; a linear probe cannot "
                           f"predict them, so those test examples all count as wrong.")
    data = ProbeData(a["train_x"], a["train_y"], a["val_x"], a["val_y"], a["test_x"], a["test_y"],
                     val_ignore=a.get("val_ignore"), test_ignore=a.get("test_ignore"))
    return fit_probe(data, metric, ProbeOptions(device=device))
