"""Attention probabilities of timm vision transformers, and the rollouts computed from them.

timm's attention modules (ViT, DeiT, BEiT, EVA, CaiT...) compute softmax(q k^T) and pass it
through their `attn_drop` module unless `fused_attn` is on (then scaled_dot_product_attention
hides it). `recording_attention` switches the fused path off for the body only (restored after,
also on error; counted per module so that concurrent explanations agree) and records what
`attn_drop` receives in every block, in forward order.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from models.tokens import patch_grid

from .errors import ExplainerError

HEAD_FUSIONS = {"mean": lambda a: a.mean(dim=-3), "max": lambda a: a.amax(dim=-3), "min": lambda a: a.amin(dim=-3)}


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The timm-style attention modules of `model`: a `fused_attn` switch and an `attn_drop` module."""
    return [
        m for m in model.modules() if hasattr(m, "fused_attn") and isinstance(getattr(m, "attn_drop", None), nn.Dropout)
    ]


_problems: weakref.WeakKeyDictionary[nn.Module, str | None] = weakref.WeakKeyDictionary()


def attention_problem(model: nn.Module) -> str | None:
    """Why the attention methods cannot explain `model`, or None (found once per model: a model's
    blocks do not change)."""
    if model not in _problems:
        _problems[model] = _attention_problem(model)
    return _problems[model]


def _attention_problem(model: nn.Module) -> str | None:
    if not attention_modules(model):
        return "Needs a vision transformer with timm attention blocks (ViT, DeiT, BEiT, EVA...); this model has none."
    if getattr(model, "cls_token", None) is None:
        return "Needs a class token, whose attention row the map shows; this transformer has none."
    return None


_lock = threading.Lock()
_users: dict[int, tuple[int, bool]] = {}


@contextmanager
def _unfused(modules: list[nn.Module]) -> Iterator[None]:
    with _lock:
        for m in modules:
            users, saved = _users.get(id(m), (0, bool(m.fused_attn)))
            m.fused_attn = False  # type: ignore[assignment]  # timm's fused_attn is a plain bool attribute
            _users[id(m)] = (users + 1, saved)
    try:
        yield
    finally:
        with _lock:
            for m in modules:
                users, saved = _users[id(m)]
                if users == 1:
                    del _users[id(m)]
                    m.fused_attn = saved  # type: ignore[assignment]  # timm's fused_attn is a plain bool attribute
                else:
                    _users[id(m)] = (users - 1, saved)


@contextmanager
def recording_attention(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Records every block's attention probabilities [B, heads, N, N] during this thread's forward
    passes in the body (the list is filled as the forward runs)."""
    modules = attention_modules(model)
    if not modules:
        raise ExplainerError(attention_problem(model))
    thread, recorded = threading.get_ident(), []

    def keep(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if threading.get_ident() == thread:
            recorded.append(output)

    handles = [m.get_submodule("attn_drop").register_forward_hook(keep) for m in modules]
    try:
        with _unfused(modules):
            yield recorded
    finally:
        for handle in handles:
            handle.remove()


def rollout(attentions: Sequence[torch.Tensor], head_fusion: str = "mean") -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020, the authors' code): per block, heads fused, the
    identity added for the residual connection and rows renormalised, Â = (A + I) / rowsum; the
    product Â_L ... Â_1. attentions: per block [..., heads, N, N]; returns [..., N, N]."""
    if head_fusion not in HEAD_FUSIONS:
        raise ExplainerError(f"Unknown head fusion {head_fusion!r}; use one of {', '.join(HEAD_FUSIONS)}.")
    result: torch.Tensor | None = None
    for attention in attentions:
        fused = HEAD_FUSIONS[head_fusion](attention.float())
        augmented = fused + torch.eye(fused.shape[-1], device=fused.device)
        augmented = augmented / augmented.sum(dim=-1, keepdim=True)
        result = augmented if result is None else augmented @ result
    if result is None:
        raise ExplainerError("The rollout needs the attention of at least one block; none was recorded.")
    return result


def gradient_rollout(attentions: Sequence[torch.Tensor], grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """Gradient-weighted rollout (Chefer et al., CVPR 2021, "Generic attention-model
    explainability", self-attention rule): R = I; per block R += mean_heads((grad * A)^+) @ R.

    attentions: per block [B, heads, N, N]; grads: per block [T, B, heads, N, N] (the gradients of
    each target's score); returns [T, B, N, N]."""
    relevance: torch.Tensor | None = None
    for attention, grad in zip(attentions, grads):
        weighted = (grad.float() * attention.float()).clamp(min=0).mean(dim=-3)  # [T, B, N, N]
        if relevance is None:
            relevance = torch.eye(weighted.shape[-1], device=weighted.device).expand_as(weighted).clone()
        relevance = relevance + weighted @ relevance
    if relevance is None:
        raise ExplainerError("The rollout needs the attention of at least one block; none was recorded.")
    return relevance


def class_token_map(relevance: torch.Tensor, model: nn.Module, input_hw: tuple[int, int]) -> torch.Tensor:
    """The class token's row over the patch tokens, as the patch grid: [..., N, N] -> [..., h, w].

    The class token is token 0; the prefix tokens (class, distillation, registers) and the grid
    come from the model (`models.tokens.patch_grid`: `num_prefix_tokens`, the patch embedding's
    grid for this input size)."""
    tokens = relevance.shape[-1]
    prefix, height, width = patch_grid(model, input_hw, tokens)
    if prefix < 1 or prefix + height * width != tokens:
        raise ExplainerError(f"{tokens} attention tokens do not split into a class token and a patch grid.")
    return relevance[..., 0, prefix:].reshape(*relevance.shape[:-2], height, width)
