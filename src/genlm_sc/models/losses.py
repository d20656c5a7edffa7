"""Losses normalised by the global batch, for training with several processes."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["token_loss"]


def token_loss(
    logits: torch.Tensor, labels: torch.Tensor, count: torch.Tensor | int | None = None
) -> torch.Tensor:
    """Cross-entropy summed over the scored positions (``labels != -100``), divided by
    ``count``.

    Parameters
    ----------
    logits, labels
        ``(..., n_classes)`` and ``(...)``.
    count
        The number of scored positions of the whole batch: over every process and
        gradient-accumulation step (the Trainer's ``num_items_in_batch``), so that the
        processes' losses add up to the mean over the global batch. ``None``: this batch's
        own count (its mean; 0 when nothing is scored).
    """
    total = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1).to(logits.device),
        ignore_index=-100, reduction="sum",
    )  # fmt: skip
    if count is None:
        count = (labels != -100).sum()
    return total / torch.as_tensor(count, device=total.device, dtype=total.dtype).clamp(min=1)
