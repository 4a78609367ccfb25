"""Attention rollout (Abnar & Zuidema 2020) and gradient-weighted rollout (Chefer et al. 2021)
against their formulas on hand-made attention matrices and on timm vision transformers."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from explain_nets import tiny_vit
from nets import GapLinearNet

import explainers
from explainers.attention import attention_modules, gradient_rollout, rollout

ROLLOUTS = ["attention_rollout", "gradient_rollout"]


def random_attention(generator: torch.Generator, batch: int = 1, heads: int = 2, tokens: int = 3) -> torch.Tensor:
    return torch.rand(batch, heads, tokens, tokens, generator=generator).softmax(dim=-1)


def test_rollout_is_the_product_of_residual_augmented_attention():
    generator = torch.Generator().manual_seed(0)
    blocks = [random_attention(generator) for _ in range(3)]
    for fusion, fuse in (("mean", np.mean), ("max", np.max), ("min", np.min)):
        expected = np.eye(3)
        for a in blocks:
            fused = fuse(a[0].numpy(), axis=0) + np.eye(3)
            expected = (fused / fused.sum(axis=1, keepdims=True)) @ expected
        np.testing.assert_allclose(rollout(blocks, fusion)[0].numpy(), expected, rtol=1e-5)
    with pytest.raises(explainers.ExplainerError, match="head fusion"):
        rollout(blocks, "median")


def test_rollout_of_self_attention_only_is_the_identity():
    eye = torch.eye(4).expand(1, 2, 4, 4)
    np.testing.assert_allclose(rollout([eye, eye]).numpy()[0], np.eye(4))
    grads = torch.ones(1, 1, 2, 4, 4)
    np.testing.assert_allclose(gradient_rollout([eye], [grads]).numpy()[0, 0], 2 * np.eye(4))  # I + I @ I


def test_gradient_rollout_accumulates_positive_gradient_weighted_attention():
    generator = torch.Generator().manual_seed(1)
    blocks = [random_attention(generator) for _ in range(2)]
    grads = [torch.randn(2, 1, 2, 3, 3, generator=generator) for _ in range(2)]  # 2 targets
    got = gradient_rollout(blocks, grads).numpy()
    for t in range(2):
        expected = np.eye(3)
        for a, g in zip(blocks, grads):
            weighted = np.clip(g[t, 0].numpy() * a[0].numpy(), 0, None).mean(axis=0)
            expected = expected + weighted @ expected
        np.testing.assert_allclose(got[t, 0], expected, rtol=1e-5)


def hand_attentions(vit, x: torch.Tensor) -> list[torch.Tensor]:
    """softmax(q k^T / sqrt(d)) of every block, from the qkv projection of the block's input."""
    inputs = []
    handles = [block.attn.register_forward_pre_hook(lambda m, args: inputs.append(args[0])) for block in vit.blocks]
    with torch.no_grad():
        vit(x)
    for handle in handles:
        handle.remove()
    result = []
    with torch.no_grad():
        for block, tokens in zip(vit.blocks, inputs):
            attn = block.attn
            b, n, _ = tokens.shape
            q, k, _ = attn.qkv(tokens).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
            result.append(((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1))
    return result


def patch_map(relevance: torch.Tensor, prefix: int, size: int) -> np.ndarray:
    grid = relevance[0, prefix:].reshape(1, 1, 4, 4)
    return F.interpolate(grid, size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy()


@pytest.mark.parametrize("extra", [{}, {"reg_tokens": 2}])
def test_engine_rollout_equals_the_formula_on_the_models_own_attention(extra):
    vit = tiny_vit(**extra)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    fused = [m.fused_attn for m in attention_modules(vit)]
    result = explainers.explain(vit, x, ROLLOUTS, top_k=2)
    assert [m.fused_attn for m in attention_modules(vit)] == fused  # restored
    expected = patch_map(rollout(hand_attentions(vit, x))[0], vit.num_prefix_tokens, 32)
    for target in result.targets[0]:
        np.testing.assert_allclose(result.get("attention_rollout", target).raw, expected, rtol=1e-4, atol=1e-6)


def test_engine_gradient_rollout_uses_each_targets_attention_gradients():
    vit = tiny_vit()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    result = explainers.explain(vit, x, ["gradient_rollout"], targets=[1, 4])
    for module in attention_modules(vit):
        module.fused_attn = False
    recorded = []
    handles = [m.attn_drop.register_forward_hook(lambda m, i, o: recorded.append(o)) for m in attention_modules(vit)]
    logits = vit(x)
    for handle in handles:
        handle.remove()
    for target in (1, 4):
        grads = torch.autograd.grad(logits[0, target], recorded, retain_graph=True)
        relevance = gradient_rollout([a.detach() for a in recorded], [g[None] for g in grads])[0, 0]
        np.testing.assert_allclose(
            result.get("gradient_rollout", target).raw, patch_map(relevance, 1, 32), rtol=1e-4, atol=1e-6
        )
    assert not np.allclose(result.get("gradient_rollout", 1).raw, result.get("gradient_rollout", 4).raw)


def test_fused_attention_is_restored_after_an_error():
    vit = tiny_vit()
    for module in attention_modules(vit):
        module.fused_attn = True
    handle = vit.head.register_forward_hook(lambda *args: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        explainers.explain(vit, torch.randn(1, 3, 32, 32), ROLLOUTS)
    handle.remove()
    assert all(m.fused_attn for m in attention_modules(vit))
    assert sum(len(m._forward_hooks) for m in vit.modules()) == 0


def test_attention_methods_are_unavailable_on_a_cnn_with_a_reason():
    net = GapLinearNet().eval()
    reasons = explainers.availability(net, layer="features")
    for name in ROLLOUTS:
        assert "vision transformer" in reasons[name]
    assert reasons["gradcam"] is None
    with pytest.raises(explainers.ExplainerError, match="vision transformer"):
        explainers.explain(net, torch.randn(1, 3, 16, 16), ["attention_rollout"])
    vit_reasons = explainers.availability(tiny_vit(), layer=None)
    assert vit_reasons["attention_rollout"] is None and vit_reasons["gradient_rollout"] is None
    assert vit_reasons["rise"] is None


@pytest.mark.parametrize("name, prefix", [("vit_tiny_patch16_224", 1), ("deit_tiny_distilled_patch16_224", 2)])
def test_rollouts_and_rise_on_timm_transformers(name, prefix):
    model = timm.create_model(name, pretrained=False).eval()
    assert model.num_prefix_tokens == prefix
    fused = [m.fused_attn for m in attention_modules(model)]
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(4))
    result = explainers.explain(
        model, x, ROLLOUTS + ["rise"], top_k=2, options=explainers.Options(rise_masks=32, batch_size=16)
    )
    assert [m.fused_attn for m in attention_modules(model)] == fused
    assert len(result.maps) == 6
    for item in result.maps:
        assert item.raw.shape == (224, 224) and np.isfinite(item.raw).all()
        assert item.raw.std() > 0, item.method
    first, second = result.targets[0]
    assert not np.allclose(result.get("gradient_rollout", first).raw, result.get("gradient_rollout", second).raw)
