"""Opt-in faster training on CPU (`python -m codefusion.train --fast-cpu-training`): the same network and weights.

A torch profile of a Bash fine-tuning step (bfloat16 autocast, two threads, session 56) put a third of it in
`aten::bernoulli_`, torch's CPU dropout mask (one generator call per element), and showed SDPA's fused CPU attention
taking 12 ms per backward call (147 ms of a 413 ms step). `fast_cpu_training(model)` swaps every nn.Dropout for
`Dropout` below, which cuts 16-bit pieces from full-range 64-bit draws (the same Bernoulli mask, p rounded to
1/65536, a quarter of the calls), and makes N, D and the T5 parts (E, the AR baseline) write attention's products out
while training on CPU. A step is 1.3-1.5x faster; every mask is another draw than torch's, so a recipe trained with
it is another draw of that recipe (measured per recipe before one adopts it: README, "Speed"). GPUs and eval mode
keep torch's kernels. It holds no weights: checkpoints are unchanged and load without it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """F.dropout(x, p, training), from the same global generator (seeded runs repeat; --resume restores it)."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, True)
    cut = round(p * 65536)   # pieces below cut - 32768 are dropped: P = cut / 65536
    if cut >= 65536:
        return x * 0.0
    n = x.numel()
    pieces = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-2**63, None).view(torch.int16)[:n]
    keep = pieces.view(x.shape) >= cut - 32768
    return x * keep.to(x.dtype).mul_(65536 / (65536 - cut))


class Dropout(nn.Dropout):
    """nn.Dropout through `dropout` above (no weights: checkpoints are unchanged)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


def attention(q, k, v, scale: float, p: float = 0.0, training: bool = False, mask=None, bias=None) -> torch.Tensor:
    """softmax(q k^T scale + bias) v over (B, heads, L, d); mask: bool, True where attention is allowed; p: dropout of
    the attention weights. Training on CPU writes the products out (faster there than SDPA's fused kernel, whose
    fallback for dropout also draws torch's slow mask); otherwise SDPA's kernel."""
    if not (training and q.device.type == "cpu"):
        if bias is not None:   # transformers' T5 mask: bias plus the mask's -inf, as SDPA's float mask
            mask = bias if mask is None else bias.masked_fill(~mask, float("-inf"))
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p if training else 0.0, scale=scale)
    scores = q @ k.transpose(-2, -1) * scale
    if bias is not None:
        scores = scores + bias
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return dropout(scores.softmax(-1), p, training) @ v


def _t5_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, position_bias=None, **kwargs):
    """transformers' eager T5 attention (an additive mask and position bias, T5's scale of 1) run by `attention`."""
    bias = position_bias
    if attention_mask is not None:
        bias = attention_mask if bias is None else bias + attention_mask
    out = attention(query, key, value, query.shape[-1] ** -0.5 if scaling is None else scaling, dropout,
                    module.training, bias=bias)
    return out.transpose(1, 2).contiguous(), None


T5_ATTENTION = "codefusion"


def fast_cpu_training(model: nn.Module) -> nn.Module:
    """Every nn.Dropout of `model` becomes `Dropout`, its T5 parts (E; the AR baseline) attend through
    `_t5_attention`, and N's and D's layers run written out (model._layer sees the swapped dropouts)."""
    from transformers import AttentionInterface, PreTrainedModel
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(T5_ATTENTION, _t5_attention)
    # and eager attention's masks (additive, causal in the AR decoder): unregistered, transformers would pass none
    AttentionMaskInterface.register(T5_ATTENTION, eager_mask)
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if type(child) is nn.Dropout:
                setattr(parent, name, Dropout(child.p, child.inplace))
    for part in model.modules():
        if isinstance(part, PreTrainedModel):
            part.config._attn_implementation = T5_ATTENTION
    return model
