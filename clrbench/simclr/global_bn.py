"""Batch norm with training statistics over the global batch of every process (SimCLR v1 sec. 2.2).

With per-device BN both views of an image sit on one device, so the batch statistics leak which
samples are positives (protocol.md 4.7). :class:`GlobalBatchNorm` computes the mean and variance
over all processes, with one all-reduce in the forward pass and one in the backward pass.

Gradient convention: each rank's loss is a mean over its own samples and DDP averages the
parameter gradients over ranks (see :mod:`clrbench.dist`). The backward here therefore reduces the
*sum* of the incoming gradients over ranks; the weight and bias gradients it returns are this
rank's share, which DDP's average turns into the single-process gradient on the full batch.
"""

from __future__ import annotations

from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from clrbench import dist


def _reduce_dims(x: torch.Tensor) -> list[int]:
    return [0, *range(2, x.ndim)]


def _per_channel(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """View a (C,) vector as (1, C, 1, ...) so it broadcasts against ``x``."""
    return v.view(1, -1, *([1] * (x.ndim - 2)))


def _local_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """This shard's per-channel mean and sum of squared deviations, each (C,) in x's dtype."""
    dims = _reduce_dims(x)
    if x.is_cuda:  # one fused Welford pass
        var, mean = torch.var_mean(x, dim=dims, correction=0)
        return mean, var * (x.numel() // x.shape[1])
    # On CPU var_mean over non-contiguous dims is ~10x slower than this two-pass form.
    mean = x.mean(dims, keepdim=True)
    return mean.flatten(), (x - mean).square_().sum(dims)


@torch.no_grad()
def global_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-channel mean, biased variance and element count over the global batch.

    Each rank computes its own mean m_r and squared deviations M2_r = sum (x - m_r)^2; one
    all-reduce of [n_r m_r, M2_r + n_r m_r^2, n_r] in float64 gives the global sums. float64
    keeps S2 - N m^2 from cancelling, so the result is as exact as a two-pass variance on the
    concatenated batch, for equal or unequal shards.

    Args:
        x: (N, C) or (N, C, *spatial), this rank's shard.

    Returns:
        mean (C,) and biased variance (C,) in float64, and the global count per channel (scalar,
        float64).
    """
    channels = x.shape[1]
    n = x.numel() // channels
    if n > 0:
        mean, m2 = (t.double() for t in _local_moments(x))
    else:  # an empty shard contributes nothing
        mean = m2 = torch.zeros(channels, dtype=torch.float64, device=x.device)
    local = torch.cat([mean * n, m2 + mean.square() * n, mean.new_tensor([float(n)])])
    total = dist.all_reduce_sum(local, tag="bn.forward")
    count = total[-1]
    mean = total[:channels] / count
    var = (total[channels:-1] / count - mean.square()).clamp_min(0.0)
    return mean, var, count


class _GlobalNormalize(torch.autograd.Function):
    """y = weight * (x - mean) * invstd + bias, with mean and invstd from the global batch.

    The backward includes the dependence of mean and invstd on x across every rank:
        dx = weight * invstd * (dy - mean_g(dy) - x_hat * mean_g(dy * x_hat)),
    where mean_g averages over the global batch, so one all-reduce of
    [sum(dy), sum(dy * x_hat)] (2C numbers) is all the communication it needs. The element-wise
    work runs in ATen's fused batch-norm kernels (eval-mode transform, backward reduction), so
    the step costs about what nn.BatchNorm costs plus the two all-reduces.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor | None,
        bias: torch.Tensor | None,
        mean: torch.Tensor,
        var: torch.Tensor,
        count: torch.Tensor,
        eps: float,
    ) -> torch.Tensor:
        # With the global statistics passed as "running" ones, the eval-mode kernel is exactly
        # the normalisation we need, in one fused pass.
        y = F.batch_norm(x, mean, var, weight, bias, training=False, momentum=0.0, eps=eps)
        ctx.save_for_backward(x, weight, mean, torch.rsqrt(var + eps), count)
        ctx.eps = eps
        return y

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight, mean, invstd, count = ctx.saved_tensors
        # One fused pass for this rank's sum(dy * x_hat) and sum(dy); dx is not asked for.
        _, sum_dy_xhat, sum_dy = torch.ops.aten.native_batch_norm_backward(
            dy, x, weight, None, None, mean, invstd, True, ctx.eps, [False, True, True]
        )
        # This rank's share; DDP's average over ranks completes the parameter gradients.
        grad_weight = sum_dy_xhat if weight is not None and ctx.needs_input_grad[1] else None
        grad_bias = sum_dy if ctx.needs_input_grad[2] else None
        grad_x = None
        if ctx.needs_input_grad[0]:
            sums = dist.all_reduce_sum(torch.stack([sum_dy, sum_dy_xhat]), tag="bn.backward")
            mean_dy, mean_dy_xhat = (sums / count.to(sums.dtype)).unbind(0)
            gain = invstd if weight is None else invstd * weight
            # dx = gain * dy + slope * x + offset, per channel: two passes over the activations.
            slope = -gain * invstd * mean_dy_xhat
            offset = -gain * mean_dy - slope * mean
            grad_x = torch.addcmul(_per_channel(offset, x), x, _per_channel(slope, x))
            grad_x.addcmul_(dy, _per_channel(gain, x))
        return grad_x, grad_weight, grad_bias, None, None, None, None


def global_batch_norm(
    x: torch.Tensor,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    momentum: float,
    eps: float,
) -> torch.Tensor:
    """Training-mode batch norm with statistics over the global batch (F.batch_norm's contract).

    Works in one process too (the all-reduce is then the identity).

    Args:
        x: (N, C) or (N, C, *spatial), this rank's shard; float32 or float64 (other dtypes are
            computed in float32 and cast back).
        running_mean, running_var: (C,) buffers updated in place with factor ``momentum``, using
            the unbiased global variance like nn.BatchNorm; None to skip.
        weight, bias: (C,) affine parameters, each may be None.
        momentum: exponential average factor for the running statistics.
        eps: added to the variance.

    Returns:
        Tensor shaped like ``x``.
    """
    out_dtype = x.dtype
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    mean, var, count = global_moments(x)
    if running_mean is not None and running_var is not None:
        with torch.no_grad():
            unbiased = var * (count / (count - 1).clamp_min(1.0))
            # (1 - m) * old + m * new, in the order nn.BatchNorm's kernels use.
            running_mean.mul_(1.0 - momentum).add_(mean.to(running_mean.dtype) * momentum)
            running_var.mul_(1.0 - momentum).add_(unbiased.to(running_var.dtype) * momentum)
    y = _GlobalNormalize.apply(x, weight, bias, mean.to(x.dtype), var.to(x.dtype), count, eps)
    return y.to(out_dtype)


class GlobalBatchNorm(_BatchNorm):
    """Drop-in nn.BatchNorm1d/2d whose training statistics are those of the global batch.

    Parameters and buffers (weight, bias, running_mean, running_var, num_batches_tracked) are
    those of nn.BatchNorm, so checkpoints keep torchvision's keys; weight or bias may be None.
    Eval mode, and training in one process, call the native ``F.batch_norm`` and so equal
    nn.BatchNorm bit for bit. With several processes every rank must run the same BN layers in
    the same order (true for DDP), because each training forward and backward is a collective.

    Shapes:
        input (N, C) or (N, C, *spatial); output the same.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(
                f"GlobalBatchNorm expects (N, C, ...) input, got shape {tuple(input.shape)}."
            )

    @classmethod
    def from_batchnorm(cls, bn: _BatchNorm) -> GlobalBatchNorm:
        """Wrap an existing batch norm, sharing its Parameter and buffer objects."""
        out = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
        out.weight, out.bias = bn.weight, bn.bias
        out.running_mean, out.running_var = bn.running_mean, bn.running_var
        out.num_batches_tracked = bn.num_batches_tracked
        out.train(bn.training)
        return out

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        use_batch_stats = self.training or self.running_mean is None
        if not use_batch_stats or dist.world_size() == 1:
            return super().forward(input)
        factor = 0.0
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            # momentum None means a cumulative average, as in nn.BatchNorm.
            factor = (
                1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            )
        track = self.training and self.track_running_stats
        return global_batch_norm(
            input,
            self.running_mean if track else None,
            self.running_var if track else None,
            self.weight,
            self.bias,
            factor,
            self.eps,
        )


__all__ = ["GlobalBatchNorm", "global_batch_norm", "global_moments"]


_M = TypeVar("_M", bound=nn.Module)


def convert_global_bn(model: _M) -> _M:
    """Replace every ``nn.BatchNorm1d/2d/3d`` in ``model`` by a GlobalBatchNorm, in place.

    Call it before wrapping in DDP, which records the modules it wraps. Building the optimizer
    before or after does not matter: the new modules keep the very same Parameter and buffer
    objects, so keys, values, ``requires_grad`` and optimizer references are unchanged.
    ``weight=None`` or ``bias=None`` stay None. In one
    process GlobalBatchNorm runs the native kernel, so converting is always safe.

    Returns:
        ``model`` (or the replacement when ``model`` itself is a batch norm).
    """
    if isinstance(model, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
        return GlobalBatchNorm.from_batchnorm(model)  # type: ignore[return-value]
    for name, child in model.named_children():
        converted = convert_global_bn(child)
        if converted is not child:
            setattr(model, name, converted)
    return model
