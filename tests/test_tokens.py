"""models.tokens and the layer taps on token layers: conversions, grids, and exact CAMs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from token_nets import PatchTokenNet, tiny_swin, tiny_vit

import explainers
from explainers.taps import layer_tap
from models.tokens import (
    CHANNELS_LAST,
    GRID,
    TOKENS,
    TokenLayout,
    declare_layout,
    from_grid,
    layout_of,
    looks_channels_last,
    patch_grid,
    to_grid,
)


def position_tokens(batch: int, prefix: int, height: int, width: int, channels: int = 3) -> torch.Tensor:
    """Tokens whose patch values say where they are: 100 * row + column (+ 1000 * channel)."""
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    patches = (100 * rows + cols).flatten().float()[None, :, None] + 1000 * torch.arange(channels).float()
    prefix_tokens = -torch.arange(1, prefix + 1).float()[None, :, None].expand(1, prefix, channels)
    return torch.cat([prefix_tokens, patches], dim=1).expand(batch, -1, -1).clone()


@pytest.mark.parametrize("prefix", [0, 1, 2, 5])
def test_tokens_become_a_row_major_grid_and_back(prefix):
    tokens = position_tokens(2, prefix, 3, 5)
    layout = TokenLayout(TOKENS, prefix, 3, 5)
    grid, kept = to_grid(tokens, layout)
    assert grid.shape == (2, 3, 3, 5)
    assert grid[1, 2, 2, 4] == 2000 + 204 and grid[0, 0, 1, 0] == 100
    assert (kept is None) == (prefix == 0)
    rebuilt = from_grid(grid, layout, kept)
    assert torch.equal(rebuilt, tokens) and rebuilt.is_contiguous()


def test_a_batch_of_grids_gets_the_prefix_tokens_of_its_one_image():
    tokens = position_tokens(1, 2, 2, 2)
    layout = TokenLayout(TOKENS, 2, 2, 2)
    grid, prefix = to_grid(tokens, layout)
    batch = grid.expand(4, -1, -1, -1) * torch.arange(4).float()[:, None, None, None]
    rebuilt = from_grid(batch, layout, prefix)
    assert rebuilt.shape == (4, 6, 3)
    assert torch.equal(rebuilt[:, :2], tokens[:, :2].expand(4, -1, -1))
    assert torch.equal(rebuilt[3, 2:], 3 * tokens[0, 2:])


def test_channels_last_and_grid_layouts():
    nhwc = torch.randn(2, 4, 6, 8)
    grid, prefix = to_grid(nhwc, TokenLayout(CHANNELS_LAST))
    assert grid.shape == (2, 8, 4, 6) and prefix is None and torch.equal(grid[:, 3, 1, 2], nhwc[:, 1, 2, 3])
    assert torch.equal(from_grid(grid, TokenLayout(CHANNELS_LAST)), nhwc)
    assert TokenLayout(CHANNELS_LAST).grid_shape(nhwc.shape) == (8, 4, 6)
    assert to_grid(nhwc, TokenLayout(GRID))[0] is nhwc


def test_a_wrong_token_count_is_refused():
    with pytest.raises(ValueError, match="1 prefix tokens"):
        to_grid(torch.zeros(1, 10, 4), TokenLayout(TOKENS, 1, 3, 4))
    with pytest.raises(ValueError):
        TokenLayout("sideways")


def test_patch_grid_of_timm_models_reads_the_model():
    vit = tiny_vit()
    assert patch_grid(vit, (96, 96), 37) == (1, 6, 6)
    assert patch_grid(vit, None, 36) == (0, 6, 6)  # patch_embed's own output
    assert patch_grid(tiny_vit(distilled=True), (96, 96), 38) == (2, 6, 6)
    registers = tiny_vit(reg_tokens=4)
    assert registers.num_prefix_tokens == 5 and patch_grid(registers, (96, 96), 41) == (5, 6, 6)
    dynamic = tiny_vit(dynamic_img_size=True)
    assert patch_grid(dynamic, (96, 160), 61) == (1, 6, 10)  # the grid of this input
    swin = tiny_swin()
    assert patch_grid(swin, (64, 64), 64) == (0, 8, 8)  # a later Swin stage


def test_patch_grid_of_other_modules_from_the_token_count():
    plain = torch.nn.Linear(2, 2)
    assert patch_grid(plain, (224, 224), 197) == (1, 14, 14)
    assert patch_grid(plain, None, 198) == (2, 14, 14)
    assert patch_grid(plain, None, 49) == (0, 7, 7)


@pytest.mark.parametrize(
    "shape, expected",
    [
        ((1, 7, 7, 768), True),
        ((1, 768, 7, 7), False),
        ((1, 7, 7, 7), False),
        ((1, 56, 56, 96), True),
        ((1, 64, 55, 55), False),
        ((1, 14, 20, 384), True),
    ],
)
def test_channels_last_is_told_from_the_input_size(shape, expected):
    input_hw = (224, 320) if shape[2] == 20 else (224, 224)
    assert looks_channels_last(shape, input_hw) is expected
    assert not looks_channels_last(shape, None)


def test_a_declared_layout_wins_and_may_depend_on_the_input():
    net = PatchTokenNet(prefix=1)
    assert layout_of(net, "mixer", (1, 33, 6), None) == TokenLayout(TOKENS, 8, 5, 5)  # the square guess
    declare_layout(net, "mixer", lambda hw, shape: TokenLayout(TOKENS, 1, hw[0] // 4, hw[1] // 4))
    assert layout_of(net, "mixer", (1, 33, 6), (16, 32)) == TokenLayout(TOKENS, 1, 4, 8)
    declare_layout(net, "mixer", TokenLayout(TOKENS, 1, 4, 8))
    assert layout_of(net, "mixer", (1, 33, 6), None) == TokenLayout(TOKENS, 1, 4, 8)
    assert layout_of(net, "head", (1, 5), None) is None


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.mark.parametrize("prefix, channels_last", [(0, False), (1, False), (2, False), (0, True)])
def test_gradcam_on_a_token_layer_is_the_closed_form(prefix, channels_last):
    torch.manual_seed(prefix)
    net = PatchTokenNet(prefix=prefix, channels_last=channels_last).eval()
    x = torch.randn(2, 3, 32, 32)  # an 8 x 8 grid
    result = explainers.explain(net, x, ["gradcam", "hirescam"], targets=[1, 3], layer="mixer")
    for target in (1, 3):
        expected = torch.nn.functional.interpolate(
            net.gradcam(x, target)[:, None], size=(32, 32), mode="bilinear", align_corners=False
        )[:, 0]
        for image in range(2):
            for method in ("gradcam", "hirescam"):
                raw = result.get(method, target, image).raw
                np.testing.assert_allclose(raw, expected[image].detach().numpy(), rtol=1e-4, atol=1e-6)


def test_a_non_square_grid_is_found_from_the_input_size():
    torch.manual_seed(0)
    net = PatchTokenNet(prefix=1).eval()
    x = torch.randn(1, 3, 16, 32)  # a 4 x 8 grid, 33 tokens
    assert patch_grid(net, (16, 32), 33) == (1, 4, 8) and patch_grid(net, None, 33) == (8, 5, 5)
    expected = (
        torch.nn.functional.interpolate(
            net.gradcam(x, 2)[:, None], size=(16, 32), mode="bilinear", align_corners=False
        )[0, 0]
        .detach()
        .numpy()
    )
    raw = explainers.explain(net, x, ["gradcam"], targets=[2], layer="mixer").maps[0].raw
    np.testing.assert_allclose(raw, expected, rtol=1e-4, atol=1e-6)


def test_an_unusual_layout_is_declared():
    """40 prefix tokens before an 8 x 8 grid look like 4 + 10 x 10: the caller declares the layout."""
    torch.manual_seed(0)
    net = PatchTokenNet(prefix=40).eval()
    x = torch.randn(1, 3, 32, 32)
    assert layout_of(net, "mixer", (1, 104, 6), (32, 32)) == TokenLayout(TOKENS, 4, 10, 10)
    tap = layer_tap(net, "mixer", layout=TokenLayout(TOKENS, 40, 8, 8))
    with tap.attached(), torch.no_grad():
        net(x)
    assert tap.activations().shape == (1, 6, 8, 8)
    declare_layout(net, "mixer", TokenLayout(TOKENS, 40, 8, 8))
    expected = (
        torch.nn.functional.interpolate(
            net.gradcam(x, 2)[:, None], size=(32, 32), mode="bilinear", align_corners=False
        )[0, 0]
        .detach()
        .numpy()
    )
    raw = explainers.explain(net, x, ["gradcam"], targets=[2], layer="mixer").maps[0].raw
    np.testing.assert_allclose(raw, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("prefix, channels_last", [(2, False), (0, True)])
def test_ablationcam_feeds_ablated_grids_as_tokens_with_the_prefix_kept(prefix, channels_last):
    torch.manual_seed(4)
    net = PatchTokenNet(prefix=prefix, channels_last=channels_last).eval()
    x = torch.randn(1, 3, 32, 32)
    logits = net(x)[0]
    target = int(logits.argmax())
    assert logits[target] > 0
    result = explainers.explain(net, x, ["ablationcam"], targets=[target], layer="mixer")
    weights = net.ablation_drops(x, target)[0] / logits[target]
    expected = torch.einsum("k,khw->hw", weights, net.mixer_grid(x)[0]).clamp(min=0)
    expected = (
        torch.nn.functional.interpolate(expected[None, None], size=(32, 32), mode="bilinear", align_corners=False)[0, 0]
        .detach()
        .numpy()
    )
    np.testing.assert_allclose(result.maps[0].raw, expected, rtol=1e-4, atol=1e-6)


def test_the_tap_leaves_no_hook_and_gives_the_same_logits():
    net = tiny_vit()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        before = net(x)
    for mode in ("keep", "detach"):
        tap = layer_tap(net, "blocks.1.norm1", mode)
        with tap.attached():
            logits = net(x)
        torch.testing.assert_close(logits, before)
        assert tap.activations().shape == (1, 48, 6, 6) and tap.layout == TokenLayout(TOKENS, 1, 6, 6)
        assert tap.activations().requires_grad and tap.activations().is_leaf == (mode == "detach")
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())


def test_detached_grid_gradient_is_the_token_gradient():
    """d(score)/d(grid) from the detached tap equals the gradient of the score w.r.t. the tokens,
    read on the patch tokens and reshaped by hand."""
    net = tiny_vit(distilled=True)
    x = torch.randn(1, 3, 96, 96)
    tap = layer_tap(net, "blocks.1.norm1", "detach")
    with tap.attached():
        score = net(x)[0, 3]
    (ours,) = torch.autograd.grad(score, tap.activations())
    captured = {}
    handle = net.blocks[1].norm1.register_forward_hook(lambda m, i, o: captured.setdefault("tokens", o))
    score = net(x)[0, 3]
    handle.remove()
    (tokens,) = torch.autograd.grad(score, captured["tokens"])
    by_hand = tokens[:, 2:].reshape(1, 6, 6, 48).permute(0, 3, 1, 2)
    torch.testing.assert_close(ours, by_hand)
    assert float(ours.abs().max()) > 0
