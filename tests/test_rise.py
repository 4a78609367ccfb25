"""RISE (Petsiuk et al. 2018) against its expectation in closed form, and its promises: seeded,
batched, every target from the same masked passes, the mask count on the map."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from explain_nets import LinearProbability

import explainers
from explainers import cost
from explainers.rise import MaskSampler

SIZE, CELLS, P = 16, 4, 0.5


def expected_rise(net: LinearProbability, x: torch.Tensor) -> np.ndarray:
    """E[RISE map of class 1] in closed form for p_1(x * M) = 0.5 + sum_j v_j M_j (v = w * x summed
    over colours): with masks M = A z (A: the bilinear upsampling and crop of one shift, z the
    Bernoulli(p) cells, sum_g A_ig = 1), E[M_i M_j] = p^2 + p (1 - p) K_ij, K = E_shift[A A^T], so
    E[sum_n p_1(x * M_n) M_n / (N p)] = 0.5 + p sum(v) + (1 - p) (K v)."""
    v = (net.w.reshape(3, SIZE, SIZE) * x[0]).sum(dim=0).double()
    cell = -(-SIZE // CELLS)
    up = (CELLS + 1) * cell
    grids = torch.eye(CELLS * CELLS).reshape(-1, 1, CELLS, CELLS)  # one grid per cell
    columns = F.interpolate(grids, size=(up, up), mode="bilinear", align_corners=False)[:, 0].double()
    kv = torch.zeros(SIZE, SIZE, dtype=torch.float64)
    for dy in range(cell):
        for dx in range(cell):
            a = columns[:, dy : dy + SIZE, dx : dx + SIZE]  # [cells, H, W]
            kv += torch.einsum("ghw,g->hw", a, (a * v).sum(dim=(1, 2)))
    kv /= cell * cell
    return (0.5 + P * v.sum() + (1 - P) * kv).numpy()


def test_rise_converges_to_its_closed_form_expectation_on_a_linear_model():
    net = LinearProbability(SIZE).eval()
    x = 0.5 + 0.5 * torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    options = explainers.Options(rise_masks=40000, rise_cells=CELLS, rise_probability=P, batch_size=4000)
    got = explainers.explain(net, x, ["rise"], targets=[1], options=options).maps[0].raw
    expected = expected_rise(net, x)
    assert np.corrcoef(got.ravel(), expected.ravel())[0, 1] > 0.99
    np.testing.assert_allclose(got, expected, atol=0.01)  # the N p normalisation too
    other = explainers.explain(net, x, ["rise"], targets=[0], options=options).maps[0].raw
    # p_0 + p_1 = 1 on every mask, so the two maps add up to sum_n M_n / (N p) exactly
    masks = MaskSampler(40000, (SIZE, SIZE), CELLS, P, seed=0).masks(0, 40000)
    np.testing.assert_allclose(got + other, (masks.sum(dim=0) / (40000 * P)).numpy(), rtol=1e-4)


def test_masks_follow_the_authors_sampling():
    sampler = MaskSampler(2000, (SIZE, SIZE), CELLS, P, seed=3)
    masks = sampler.masks(0, 2000)
    assert masks.shape == (2000, SIZE, SIZE)
    assert float(masks.min()) >= 0 and float(masks.max()) <= 1
    assert abs(float(masks.mean()) - P) < 0.02
    assert sampler.upsampled == ((CELLS + 1) * 4, (CELLS + 1) * 4)
    assert int(sampler.shifts.max()) == 3 and int(sampler.shifts.min()) == 0  # shifts below one cell
    np.testing.assert_array_equal(MaskSampler(50, (SIZE, SIZE), CELLS, P, seed=3).masks(0, 50), masks[:50])
    assert not torch.equal(MaskSampler(50, (SIZE, SIZE), CELLS, P, seed=4).masks(0, 50), masks[:50])


def test_every_target_comes_from_the_same_masked_batches_and_a_class_set_adds_up():
    net = LinearProbability(SIZE).eval()
    calls = []
    net.register_forward_pre_hook(lambda module, inputs: calls.append(inputs[0].shape[0]))
    x = torch.rand(1, 3, SIZE, SIZE)
    options = explainers.Options(rise_masks=100, batch_size=40)
    result = explainers.explain(net, x, ["rise"], targets=[0, 1, explainers.ClassSet([0, 1], "both")], options=options)
    assert calls == [1, 40, 40, 20]  # the shared pass, then 100 masks in batches for all targets
    total = result.get("rise", 0).raw + result.get("rise", 1).raw
    np.testing.assert_allclose(result.get("rise", explainers.ClassSet([0, 1], "both")).raw, total, rtol=1e-5)
    assert all(item.settings == {"masks": 100} for item in result.maps)


def test_mask_count_defaults_cost_and_seed():
    net = LinearProbability(SIZE).eval()
    x = torch.rand(1, 3, SIZE, SIZE)
    default = explainers.explain(net, x, ["rise"], targets=[1])
    assert default.maps[0].settings == {"masks": 1000}  # CPU default; 8000 on CUDA
    assert cost.method_passes("rise", targets=3, channels=0) == 1000
    assert cost.method_passes("rise", targets=3, channels=0, device="cuda") == 8000
    assert cost.method_passes("rise", 1, 0, explainers.Options(rise_masks=50)) == 50
    again = explainers.explain(net, x, ["rise"], targets=[1])
    np.testing.assert_array_equal(default.maps[0].raw, again.maps[0].raw)
    reseeded = explainers.explain(net, x, ["rise"], targets=[1], options=explainers.Options(seed=1))
    assert not np.array_equal(default.maps[0].raw, reseeded.maps[0].raw)
    with pytest.raises(explainers.ExplainerError, match="no counterfactual"):
        explainers.explain(net, x, ["rise"], targets=[1], counterfactual=True)
