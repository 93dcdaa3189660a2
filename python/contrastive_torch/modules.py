"""nn.Module wrappers of the losses."""
import torch
from torch import nn

from . import functional as F

__all__ = ["ClipLoss", "InfoNCELoss", "NTXentLoss", "NormalizerState", "GammaNCELoss",
           "FeatureSeparationLoss", "BrownianBridgeLoss", "GeometricConsistencyLoss"]


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


class NormalizerState(nn.Module):
    """Per-sample moving averages zeta = log Zbar of the gamma loss, as buffers (so they move with
    ``.to()``, are saved by ``state_dict`` and restored by ``load_state_dict``): ``zeta``
    (float64, [directions, num_samples]) and ``visited`` (bool, same shape). Kept on the CPU
    side by the loss (the CPU kernels read and update it)."""

    def __init__(self, num_samples, directions=2):
        super().__init__()
        if int(num_samples) < 0 or directions not in (1, 2):
            raise ValueError(f"NormalizerState: num_samples must be >= 0 and directions 1 or 2, "
                             f"got {num_samples}, {directions}")
        self.register_buffer("zeta", torch.zeros(directions, int(num_samples), dtype=torch.float64))
        self.register_buffer("visited", torch.zeros(directions, int(num_samples), dtype=torch.bool))

    @property
    def num_samples(self):
        return self.zeta.shape[1]

    @property
    def directions(self):
        return self.zeta.shape[0]

    def reset(self):
        """Forgets every estimate (e.g. after the temperature has moved far)."""
        with torch.no_grad():
            self.zeta.zero_()
            self.visited.zero_()

    def log_normalizer(self, ids, direction=0):
        """zeta of these ids (NaN where unvisited)."""
        ids = torch.as_tensor(ids, dtype=torch.long)
        z = self.zeta[direction, ids]
        return torch.where(self.visited[direction, ids], z, torch.full_like(z, float("nan")))

    def _write_back(self, ids, new_zeta):
        """Stores the batch's updated entries (NaN: still unvisited) returned by the loss."""
        with torch.no_grad():
            ids = ids.to(self.zeta.device, torch.long)
            new_zeta = new_zeta.to(self.zeta.device)
            seen = ~torch.isnan(new_zeta)
            for d in range(new_zeta.shape[0]):
                self.zeta[d, ids] = torch.where(seen[d], new_zeta[d], self.zeta[d, ids])
                self.visited[d, ids] = seen[d] | self.visited[d, ids]

    def extra_repr(self):
        return f"num_samples={self.num_samples}, directions={self.directions}"


class GammaNCELoss(nn.Module):
    """The gamma-auxiliary loss with its own NormalizerState (``self.state``) for a dataset of
    ``num_samples`` ids. Call with ``(a, b, ids, step)``; change ``step`` every training step."""

    def __init__(self, num_samples, temperature=0.07, symmetric=True, alpha=1.0, beta=0.9, seed=0,
                 order="update_then_sample", positive_in_normaliser=False, reduction="mean"):
        super().__init__()
        self.state = NormalizerState(num_samples, 2 if symmetric else 1)
        self.temperature = temperature
        self.symmetric = symmetric
        self.alpha = alpha
        self.beta = beta
        self.seed = seed
        self.order = order
        self.positive_in_normaliser = positive_in_normaliser
        self.reduction = reduction

    def forward(self, a, b, ids, step, logit_scale=None):
        return F.gamma_nce_loss(a, b, ids, self.state, temperature=self.temperature,
                                logit_scale=logit_scale, symmetric=self.symmetric,
                                alpha=self.alpha, beta=self.beta, seed=self.seed, step=step,
                                order=self.order, positive_in_normaliser=self.positive_in_normaliser,
                                reduction=self.reduction)


class FeatureSeparationLoss(nn.Module):
    """L_Sep over (a, b, a_ind, b_ind, a_ind_aug, b_ind_aug); see feature_separation_loss."""

    def __init__(self, **options):
        super().__init__()
        self.options = options

    def forward(self, a, b, a_ind, b_ind, a_ind_aug, b_ind_aug):
        return F.feature_separation_loss(a, b, a_ind, b_ind, a_ind_aug, b_ind_aug, **self.options)


class BrownianBridgeLoss(nn.Module):
    """L_Br over (a, b, a_aug); see brownian_bridge_loss."""

    def __init__(self, **options):
        super().__init__()
        self.options = options

    def forward(self, a, b, a_aug):
        return F.brownian_bridge_loss(a, b, a_aug, **self.options)


class GeometricConsistencyLoss(nn.Module):
    """L_GC over (a, b), or L^a_GC over (a, b, a_aug, b_aug); see geometric_consistency_loss."""

    def __init__(self, **options):
        super().__init__()
        self.options = options

    def forward(self, a, b, a_aug=None, b_aug=None):
        return F.geometric_consistency_loss(a, b, a_aug, b_aug, **self.options)
