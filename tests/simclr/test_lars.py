"""LARS against the formula by hand (GR lars_optimizer.py; protocol.md §4.5)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from clrbench.simclr.lars import LARS, param_groups


def _by_hand(w, grads, lr, m, wd, eta, exclude=False):
    w, v = w.copy(), np.zeros_like(w)
    for g in grads:
        if not exclude:
            g = g + wd * w
            wn, gn = np.linalg.norm(w), np.linalg.norm(g)
            trust = eta * wn / gn if wn > 0 and gn > 0 else 1.0
            g = g * trust
        v = m * v + lr * g
        w = w - v
    return w


def _run(w0, grads, exclude=False, lr=0.5, m=0.9, wd=0.01, eta=0.001):
    p = nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    opt = LARS([{"params": [p], "lars_exclude": exclude}], lr=lr, momentum=m, weight_decay=wd, eta=eta)
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    return p.detach().numpy()


def test_two_steps_equal_the_formula() -> None:
    rng = np.random.default_rng(0)
    w0, grads = rng.normal(size=(3, 4)), [rng.normal(size=(3, 4)) for _ in range(2)]
    np.testing.assert_allclose(_run(w0, grads), _by_hand(w0, grads, 0.5, 0.9, 0.01, 0.001), rtol=1e-12)


def test_excluded_group_is_plain_momentum_sgd() -> None:
    rng = np.random.default_rng(1)
    w0, grads = rng.normal(size=5), [rng.normal(size=5) for _ in range(3)]
    np.testing.assert_allclose(_run(w0, grads, exclude=True), _by_hand(w0, grads, 0.5, 0.9, 0, 0, exclude=True))
    # i.e. torch's SGD with momentum and dampening 0 (lr folded into the buffer: same for constant lr)
    p = nn.Parameter(torch.tensor(w0))
    sgd = torch.optim.SGD([p], lr=0.5, momentum=0.9)
    for g in grads:
        p.grad = torch.tensor(g)
        sgd.step()
    np.testing.assert_allclose(_run(w0, grads, exclude=True), p.detach().numpy(), rtol=1e-12)


def test_zero_norms_give_trust_one() -> None:
    g = [np.ones(3)]
    np.testing.assert_allclose(_run(np.zeros(3), g, wd=0.0), np.zeros(3) - 0.5 * np.ones(3))
    np.testing.assert_allclose(_run(np.ones(3), [np.zeros(3)], wd=0.0), np.ones(3))


def test_param_groups_by_type_and_rank() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    decay, plain = param_groups(model, 1e-4)
    assert plain["lars_exclude"] and plain["weight_decay"] == 0.0 and not decay["lars_exclude"]
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert ids(decay["params"]) == {id(model[0].weight), id(model[3].weight)}
    assert ids(plain["params"]) == {id(model[0].bias), id(model[1].weight), id(model[1].bias), id(model[3].bias)}


def test_state_dict_round_trip() -> None:
    p = nn.Parameter(torch.ones(3))
    opt = LARS([p], lr=0.1)
    p.grad = torch.ones(3)
    opt.step()
    opt2 = LARS([p], lr=0.1)
    opt2.load_state_dict(opt.state_dict())
    assert torch.equal(opt2.state[p]["momentum_buffer"], opt.state[p]["momentum_buffer"])
