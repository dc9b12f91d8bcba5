"""LARS against its update written out in numpy (GR lars_optimizer.py; protocol.md §4.5)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from clrbench.simclr.lars import LARS, param_groups


def lars_by_hand(
    w: np.ndarray, grads: list[np.ndarray], lr: float, m: float, wd: float, eta: float
) -> np.ndarray:
    """GR's classic-momentum branch, one tensor, several steps."""
    w, v = w.copy(), np.zeros_like(w)
    for g in grads:
        g = g + wd * w
        w_norm, g_norm = np.linalg.norm(w), np.linalg.norm(g)
        trust = eta * w_norm / g_norm if w_norm > 0 and g_norm > 0 else 1.0
        v = m * v + lr * trust * g
        w = w - v
    return w


def momentum_sgd_by_hand(w: np.ndarray, grads: list[np.ndarray], lr: float, m: float) -> np.ndarray:
    w, v = w.copy(), np.zeros_like(w)
    for g in grads:
        v = m * v + lr * g
        w = w - v
    return w


def run_lars(
    w0: np.ndarray, grads: list[np.ndarray], exclude: bool = False, **kw: float
) -> np.ndarray:
    p = nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    opt = LARS([{"params": [p], "lars_exclude": exclude}], **kw)  # type: ignore[arg-type]
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    return p.detach().numpy()


def test_one_step_hand_computed() -> None:
    # ||w|| = 5, ||g|| = 1: trust = 0.001 * 5 / 1, v = 0.005 * g, w' = w - v.
    got = run_lars(np.array([3.0, 4.0]), [np.array([0.6, 0.8])], lr=1.0)
    np.testing.assert_allclose(got, [2.997, 3.996], rtol=1e-12)


def test_two_steps_with_momentum_and_weight_decay_equal_the_formula() -> None:
    rng = np.random.default_rng(0)
    w0, grads = rng.normal(size=(3, 4)), [rng.normal(size=(3, 4)) for _ in range(2)]
    kw = {"lr": 0.5, "momentum": 0.9, "weight_decay": 0.01, "eta": 0.02}
    want = lars_by_hand(w0, grads, 0.5, 0.9, 0.01, 0.02)
    np.testing.assert_allclose(run_lars(w0, grads, **kw), want, rtol=1e-12)


def test_trust_ratio_is_per_tensor() -> None:
    rng = np.random.default_rng(1)
    small, big = rng.normal(size=3), 100 * rng.normal(size=(2, 2))
    g_small, g_big = rng.normal(size=3), rng.normal(size=(2, 2))
    ps = [nn.Parameter(torch.tensor(x)) for x in (small, big)]
    opt = LARS(ps, lr=0.1, eta=0.01)
    ps[0].grad, ps[1].grad = torch.tensor(g_small), torch.tensor(g_big)
    opt.step()
    for p, w, g in zip(ps, (small, big), (g_small, g_big), strict=True):
        np.testing.assert_allclose(p.detach().numpy(), lars_by_hand(w, [g], 0.1, 0.9, 0, 0.01))


def test_excluded_group_is_plain_momentum_sgd_with_full_lr() -> None:
    rng = np.random.default_rng(2)
    w0, grads = rng.normal(size=5), [rng.normal(size=5) for _ in range(3)]
    # Its weight decay is ignored too, whatever the group says.
    got = run_lars(w0, grads, exclude=True, lr=0.5, weight_decay=0.1)
    np.testing.assert_allclose(got, momentum_sgd_by_hand(w0, grads, 0.5, 0.9), rtol=1e-12)
    p = nn.Parameter(torch.tensor(w0))  # and torch's SGD (dampening 0) agrees at constant lr
    sgd = torch.optim.SGD([p], lr=0.5, momentum=0.9)
    for g in grads:
        p.grad = torch.tensor(g)
        sgd.step()
    np.testing.assert_allclose(got, p.detach().numpy(), rtol=1e-12)


def test_zero_norms_give_trust_one() -> None:
    # w = 0: trust 1, so the first step is plain lr * g.
    np.testing.assert_allclose(run_lars(np.zeros(3), [np.ones(3)], lr=0.5), -0.5 * np.ones(3))
    # g = 0 (and no decay): nothing moves and nothing becomes NaN.
    np.testing.assert_array_equal(run_lars(np.ones(3), [np.zeros(3)], lr=0.5), np.ones(3))


def test_parameters_without_grad_are_skipped() -> None:
    p, q = nn.Parameter(torch.ones(2, 2)), nn.Parameter(torch.ones(2, 2))
    opt = LARS([p, q], lr=1.0)
    p.grad = torch.ones(2, 2)
    opt.step()
    assert torch.equal(q, torch.ones(2, 2)) and q not in opt.state and not torch.equal(p, q)


def test_param_groups_by_module_type_and_rank() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2), nn.LayerNorm(2)
    )
    model[0].weight.requires_grad_(False)  # frozen parameters stay out of both groups
    decay, plain = param_groups(model, 1e-4)
    assert decay["weight_decay"] == 1e-4 and not decay["lars_exclude"]
    assert plain["weight_decay"] == 0.0 and plain["lars_exclude"]
    assert {id(p) for p in decay["params"]} == {id(model[3].weight)}
    excluded = [model[0].bias, model[1].weight, model[1].bias, model[3].bias]
    excluded += [model[4].weight, model[4].bias]
    assert {id(p) for p in plain["params"]} == {id(p) for p in excluded}


def test_param_groups_excludes_a_2d_norm_parameter_by_type() -> None:
    class OddNorm(nn.GroupNorm):  # a norm layer whose scale is stored as a matrix
        def __init__(self) -> None:
            super().__init__(1, 4)
            self.extra = nn.Parameter(torch.ones(2, 2))

    model = nn.Sequential(nn.Linear(4, 4), OddNorm())
    decay, plain = param_groups(model, 1e-4)
    assert {id(p) for p in decay["params"]} == {id(model[0].weight)}
    assert id(model[1].extra) in {id(p) for p in plain["params"]}


def test_state_dict_round_trip_continues_identically() -> None:
    def make() -> tuple[nn.Linear, LARS]:
        torch.manual_seed(0)
        net = nn.Linear(3, 2)
        return net, LARS(param_groups(net, 1e-3), lr=0.1, weight_decay=1e-3)

    def step(net: nn.Linear, opt: LARS, seed: int) -> None:
        x = torch.randn(4, 3, generator=torch.Generator().manual_seed(seed))
        opt.zero_grad()
        net(x).square().sum().backward()
        opt.step()

    net, opt = make()
    step(net, opt, 1)
    # state_dict() shares storage with the live tensors, which the next step updates in place.
    saved_net, saved_opt = copy.deepcopy(net.state_dict()), copy.deepcopy(opt.state_dict())
    step(net, opt, 2)
    net2, opt2 = make()
    net2.load_state_dict(saved_net)
    opt2.load_state_dict(saved_opt)
    assert opt2.param_groups[1]["lars_exclude"]
    step(net2, opt2, 2)
    for a, b in zip(net.parameters(), net2.parameters(), strict=True):
        assert torch.equal(a, b)


def test_rejects_bad_hyperparameters() -> None:
    p = [nn.Parameter(torch.ones(1))]
    for kw in ({"lr": -1.0}, {"lr": 0.1, "momentum": 1.0}, {"lr": 0.1, "eta": 0.0}):
        with pytest.raises(ValueError, match="LARS needs"):
            LARS(p, **kw)  # type: ignore[arg-type]
