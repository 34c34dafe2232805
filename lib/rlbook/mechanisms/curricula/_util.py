"""Helpers the curricula mechanisms share."""

from __future__ import annotations

import torch
from torch import Tensor


def sample_advantages(advantages: Tensor, completion_mask: Tensor | None) -> Tensor:
    """[P, G] one advantage per sample.  Token-level advantages ``[P, G, T]`` are averaged over each completion's
    own tokens (``completion_mask`` ``[P * G, Lc]``: 1 through the first EOS), not over the padded width T (the
    mean DUMP's ``ray_trainer.py`` takes: ``advantages[i][response_mask[i]].mean()``); a completion with no
    token gets 0.  ``[P, G]`` advantages are returned as they are (as floats; ``completion_mask`` may be None)."""
    adv = advantages.float()
    if adv.dim() == 2:
        return adv
    if completion_mask is None:
        raise ValueError("token-level advantages [P, G, T] need the completion mask to average over")
    P, G, T = adv.shape
    m = completion_mask.float().reshape(P, G, -1)
    m = m[..., :T] if m.shape[-1] >= T else torch.nn.functional.pad(m, (0, T - m.shape[-1]))
    return (adv * m).sum(-1) / m.sum(-1).clamp(min=1.0)
