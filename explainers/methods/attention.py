"""Methods that read a vision transformer's attention: attention rollout and its gradient-weighted form."""

from __future__ import annotations

import torch

from ..attention import attention_problem, class_token_map, gradient_rollout, rollout
from ..registry import Context, Method, MethodInfo, Needs, Progress, recorded


def _rollout(context: Context, progress: Progress) -> torch.Tensor:
    attentions = recorded(context.recording.attentions, "attention")
    relevance = rollout(attentions, context.options.rollout_head_fusion)  # [B, N, N]
    return class_token_map(relevance, context.module, (context.x.shape[-2], context.x.shape[-1]))[None]


def _gradient_rollout(context: Context, progress: Progress) -> torch.Tensor:
    record = context.recording
    relevance = gradient_rollout(
        recorded(record.attentions, "attention"), recorded(record.attention_grads, "attention_gradient")
    )  # [T, B, N, N]
    return class_token_map(relevance, context.module, (context.x.shape[-2], context.x.shape[-1]))


UNITS = (
    Method(
        MethodInfo(
            "attention_rollout",
            "Attention Rollout",
            "attention",
            "Abnar & Zuidema, ACL 2020",
            "How much the class token attends to each patch through all blocks: attention "
            "matrices (heads averaged, identity added for the residual) multiplied; "
            "class-agnostic. Vision transformers only.",
            counterfactual=False,
            needs=Needs(attention=True),
        ),
        _rollout,
        check=attention_problem,
        no_counterfactual="Attention rollout does not depend on the class, so it has no counterfactual form.",
    ),
    Method(
        MethodInfo(
            "gradient_rollout",
            "Gradient Rollout",
            "attention",
            "Chefer et al., CVPR 2021",
            "Attention rollout with each block's attention weighted by its gradient (positive "
            "part, heads averaged): class-discriminative. Vision transformers only.",
            counterfactual=True,
            needs=Needs(attention=True, attention_gradient=True),
        ),
        _gradient_rollout,
        check=attention_problem,
    ),
)
