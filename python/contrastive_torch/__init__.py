"""contrastive_torch: the `contrastive` C++ losses as PyTorch ops with autograd.

    import torch, torch.nn.functional as F
    import contrastive_torch as ct
    logit_scale = torch.nn.Parameter(torch.tensor(2.6592))       # log(1/0.07), CLIP's init
    loss = ct.clip_loss(F.normalize(img), F.normalize(txt), logit_scale.exp())
    loss.backward()                                                # grads for img, txt, logit_scale
"""
from . import _ops  # loads the compiled ops and registers autograd
from .functional import clip_loss, info_nce_loss, nt_xent_loss
from .modules import ClipLoss, InfoNCELoss, NTXentLoss

__version__ = "0.1.0"

library_path = _ops._loader.load()

__all__ = ["clip_loss", "info_nce_loss", "nt_xent_loss", "ClipLoss", "InfoNCELoss", "NTXentLoss",
           "library_path"]
