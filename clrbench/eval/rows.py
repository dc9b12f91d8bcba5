"""Feature rows streamed from (memory-mapped) arrays onto the probe's device, chunk by chunk.

The feature cache keeps large splits as float16 ``.npy`` files read memory-mapped (ImageNet:
1.28M x 2048, 5.2 GB). Concatenating them on the host and casting would need the whole set in
host memory twice over in float32 (21 GB); copying chunk by chunk into one preallocated tensor
on the probe's device needs only the result there and one chunk on the host.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

CHUNK_ROWS = 65536


def stack_rows(parts: Sequence[np.ndarray], device: torch.device, dtype: torch.dtype,
               chunk: int = CHUNK_ROWS) -> torch.Tensor:
    """Concatenate (n_i, d) arrays along rows into one (sum n_i, d) tensor of ``dtype`` on ``device``.

    Equal to ``torch.from_numpy(np.concatenate(parts).astype(...)).to(device)``, without the
    host-side copies.
    """
    d = parts[0].shape[1]
    out = torch.empty((sum(len(p) for p in parts), d), device=device, dtype=dtype)
    row = 0
    for p in parts:
        for s in range(0, len(p), chunk):
            block = torch.from_numpy(np.array(p[s:s + chunk]))  # a writable host copy of one chunk
            out[row:row + len(block)] = block.to(device=device, dtype=dtype, non_blocking=False)
            row += len(block)
    return out
