"""LPIPS (Zhang et al., CVPR 2018) for Algorithm 1's background term, on [-1, 1] tensors.

Local CLIP-guided diffusion (Blended Diffusion, Algorithm 1) keeps the background close to the input
with ``D_bg(x, x̂_0, m) = MSE + LPIPS`` computed outside the edit region (m = 1 inside it)::

    LPIPS(x̂ ⊙ (1 - m), x ⊙ (1 - m))     both backgrounds, the region mid-grey in both

Zero is mid-grey in [-1, 1]: both images carry the same grey patch, so only the background (and the patch's
border, which the VGG receptive fields see) contributes. (The official code compares the masked guess with the
*full* input instead: :func:`bdlib.core.official.official_loss`.) ``lpips.LPIPS`` already expects [-1, 1] input
(``normalize=False``), so the tensors go in unchanged.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import torch
from torch import nn


def load_lpips(pretrained: bool = True, net: str = "vgg") -> nn.Module:
    """Build a frozen ``lpips.LPIPS`` model (eval mode, ``requires_grad`` off), without its prints.

    Args:
        pretrained: ``True`` loads the ImageNet VGG-16 trunk through torchvision, which downloads it
            into ``torch.hub.get_dir()`` the first time (``python -m bdlib download paper`` does this on
            purpose). ``False`` keeps the trunk random (``pnet_rand=True``) and never touches the
            network: tests use it. The linear calibration heads ship inside the ``lpips`` package and
            are loaded in both cases.
        net: the trunk, ``"vgg"`` as in Blended Diffusion (``"alex"`` and ``"squeeze"`` also exist).
    """
    import lpips

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore", UserWarning)  # torchvision's "pretrained is deprecated"
        model = lpips.LPIPS(net=net, pnet_rand=not pretrained, verbose=False)
    return model.eval().requires_grad_(False)


def _check_inputs(x: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor) -> None:
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"x must be (B, 3, H, W) in [-1, 1], got {tuple(x.shape)}")
    if reference.dim() != 4 or reference.shape[1:] != x.shape[1:] or reference.shape[0] not in (1, x.shape[0]):
        raise ValueError(
            f"reference must be (1 or {x.shape[0]}, 3, {x.shape[2]}, {x.shape[3]}) like x, got {tuple(reference.shape)}"
        )
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[0] not in (1, x.shape[0]):
        raise ValueError(f"mask must be (1 or {x.shape[0]}, 1, H, W), got {tuple(mask.shape)}")
    if mask.shape[-2:] != x.shape[-2:]:
        raise ValueError(
            f"mask is {tuple(mask.shape[-2:])} but the images are {tuple(x.shape[-2:])}; "
            "resize the mask to the image size"
        )


def background_lpips(
    lpips_model: nn.Module, x: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Background LPIPS of Algorithm 1 per sample, shape (B,): ``LPIPS(x ⊙ (1-m), reference ⊙ (1-m))``.

    Args:
        lpips_model: an ``lpips.LPIPS`` (see :func:`load_lpips`).
        x: images being generated, (B, 3, H, W) in [-1, 1]; gradients flow to it.
        reference: the input image, (1 or B, 3, H, W) in [-1, 1].
        mask: (1 or B, 1, H, W) in [0, 1], 1 = edit region, 0 = background (compared).
    """
    _check_inputs(x, reference, mask)
    keep = 1.0 - mask.to(x.dtype)  # (B or 1, 1, H, W)
    ours = x * keep  # (B, 3, H, W)
    theirs = (reference * keep).expand_as(ours)  # (B, 3, H, W)
    return lpips_model(ours, theirs, normalize=False).flatten()  # (B,)
