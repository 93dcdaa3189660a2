"""nn.Module wrappers of the losses."""
import torch
from torch import nn

from . import functional as F

__all__ = ["ClipLoss", "InfoNCELoss", "NTXentLoss"]


class ClipLoss(nn.Module):
    """open_clip's call signature: ``loss = ClipLoss()(image_features, text_features,
    logit_scale)`` with ``logit_scale`` already exponentiated; the mean of the two
    cross-entropies."""

    def __init__(self, label_smoothing=0.0, reduction="mean"):
        super().__init__()
        self.label_smoothing = label_smoothing
        self.reduction = reduction

    def forward(self, image_features, text_features, logit_scale=None, labels=None):
        return F.clip_loss(image_features, text_features, logit_scale, labels=labels,
                           label_smoothing=self.label_smoothing, reduction=self.reduction)


class InfoNCELoss(nn.Module):
    """InfoNCE (``symmetric=True``: CLIP) at a fixed temperature, or with a learnable
    ``logit_scale`` passed to forward."""

    def __init__(self, temperature=0.07, symmetric=False, label_smoothing=0.0, reduction="mean"):
        super().__init__()
        self.temperature = temperature
        self.symmetric = symmetric
        self.label_smoothing = label_smoothing
        self.reduction = reduction

    def forward(self, query, key, labels=None, logit_scale=None):
        return F.info_nce_loss(query, key, self.temperature, logit_scale=logit_scale,
                               labels=labels, label_smoothing=self.label_smoothing,
                               reduction=self.reduction, symmetric=self.symmetric)


class NTXentLoss(nn.Module):
    """NT-Xent (SimCLR) over two views ``(a, b)``; ``labels`` for SupCon-style positives."""

    def __init__(self, temperature=0.1, label_smoothing=0.0, reduction="mean"):
        super().__init__()
        self.temperature = temperature
        self.label_smoothing = label_smoothing
        self.reduction = reduction

    def forward(self, a, b, labels=None, logit_scale=None):
        return F.nt_xent_loss(a, b, self.temperature, logit_scale=logit_scale, labels=labels,
                              label_smoothing=self.label_smoothing, reduction=self.reduction)
