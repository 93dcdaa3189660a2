"""contrastive_torch: the `contrastive` C++ losses as PyTorch ops with autograd.

    import torch, torch.nn.functional as F
    import contrastive_torch as ct
    logit_scale = torch.nn.Parameter(torch.tensor(2.6592))       # log(1/0.07), CLIP's init
    loss = ct.clip_loss(F.normalize(img), F.normalize(txt), logit_scale.exp())
    loss.backward()                                                # grads for img, txt, logit_scale
"""
from . import _ops  # loads the compiled ops and registers autograd
from .functional import (brownian_bridge_loss, brownian_bridge_sample, clip_loss,
                         feature_separation_loss, gamma_nce_loss, geometric_consistency_loss,
                         info_nce_loss, nt_xent_loss)
from .modules import (BrownianBridgeLoss, ClipLoss, FeatureSeparationLoss, GammaNCELoss,
                      GeometricConsistencyLoss, InfoNCELoss, NormalizerState, NTXentLoss)

__version__ = "0.1.0"

library_path = _ops._loader.load()

__all__ = ["clip_loss", "info_nce_loss", "nt_xent_loss", "gamma_nce_loss",
           "feature_separation_loss", "brownian_bridge_loss", "brownian_bridge_sample",
           "geometric_consistency_loss", "ClipLoss", "InfoNCELoss", "NTXentLoss", "NormalizerState",
           "GammaNCELoss", "FeatureSeparationLoss", "BrownianBridgeLoss", "GeometricConsistencyLoss",
           "library_path"]
