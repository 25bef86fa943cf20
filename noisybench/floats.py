"""Losses in float32 at least: under mixed precision the logits arrive in half precision,
where a loss's logs and powers lose small probabilities; float64 logits stay float64 (the
tests' finite-difference checks)."""

from __future__ import annotations

import torch


def wide(logits: torch.Tensor) -> torch.Tensor:
    """``logits`` in float32, or wider where they already are."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32))
