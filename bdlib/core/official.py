"""The official code's choices, in one place: ``MethodSettings(official=True)`` (``--official``).

bdlib follows the paper (Avrahami et al., CVPR 2022, arXiv 2111.14818) where the paper says what to do, and the
official code (omriav/blended-diffusion at 86ed6ce; ``image_editor.py`` is ``optimization/image_editor.py``,
``arguments.py`` is ``optimization/arguments.py``, ``gaussian_diffusion.py`` its vendored guided-diffusion) where the
paper is silent. With ``official=True`` an edit follows the official code in every row of :data:`DIFFERENCES` that
changes a result, and every piece of that lives in this module: what CLIP sees, the two network passes, the
background weights, the background's noise level and noise, the final image, the warps, the resizing, the mask
reading and the ranking view. The paper's algorithms (:mod:`bdlib.core.algorithms`) never test for it.

The official step, at respaced index ``t``, with ``s = √(1-ᾱ_t)``::

    x_in = x̂_0·s + x_t·(1-s)                                  (CLIP sees this mix, not x̂_0)
    L = 1000·Σ_i D_CLIP(x_in ⊙ m) + 50·Σ_i range(x̂_0) [+ λ·mse(x_in ⊙ (1-m), x) + λ_lpips·Σ_i LPIPS(...)]
    g = -∇_{x_t} L  (a pass with grad);  μ, Σ from a second pass without grad
    x_{t-1} = N(μ + Σ·g, Σ) ⊙ m + q(x_t | x) ⊙ (1 - m)          (the background at level t, not t-1)

and the result is x̂_0 of the last step, with the input's background for Algorithm 2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import kornia.augmentation as K
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from bdlib.core.algorithms import EditStep, Losses, blend_images, ddpm_update, guidance, local_step, noised_input
from bdlib.core.diffusion import Diffusion
from bdlib.core.losses import clip_distance, d_clip, range_loss
from bdlib.core.sampling import at, chain
from bdlib.runtime.randomness import SampleStreams

#: The official weights of Algorithm 1's background terms (with ``--background_preservation_loss``): λ of the L2 term
#: (``--l2_sim_lambda``, on the batch mean) and LPIPS's share of it (``--lpips_sim_lambda`` 1000 = 0.1·10000).
OFFICIAL_LAM, OFFICIAL_LPIPS_WEIGHT = 10000.0, 0.1
#: The official batch (``--batch_size``): the samples of one batch share their background noise.
OFFICIAL_BATCH = 4
#: The warps' parameters: RandomAffine(degrees=15, translate=0.1, p=0.7), RandomPerspective(0.7, p=0.7).
DEGREES, TRANSLATE, DISTORTION, P_WARP = 15.0, 0.1, 0.7, 0.7


@dataclass(frozen=True)
class Difference:
    """One row of the table: a choice, what the paper and the official code do, and what bdlib does in each mode."""

    choice: str
    paper: str
    official_code: str
    bdlib_default: str
    bdlib_official: str


DIFFERENCES: tuple[Difference, ...] = (
    Difference(
        "what CLIP sees",
        "x̂_0 (Alg. 1-2)",
        "x_in = x̂_0·s + x_t·(1-s), s = √(1-ᾱ_t) (image_editor.py:177-178)",
        "x̂_0",
        "the x_in mix",
    ),
    Difference(
        "gradient taken w.r.t.",
        "x̂_0 (Alg. 1-2 write ∇_{x̂_0} L)",
        "x_t, through the UNet (image_editor.py:210)",
        "x_t: guided-diffusion's classifier-guidance mean shift; gradient='pred_x0' is the paper as written",
        "x_t",
    ),
    Difference(
        "level of the blended background",
        "t-1, like x_{t-1} (Alg. 2)",
        "t (postprocess_fn, image_editor.py:213-219)",
        "t-1",
        "t",
    ),
    Difference(
        "network passes per step",
        "not stated (one suffices)",
        "two: no grad for μ, with grad inside cond_fn (image_editor.py:173)",
        "one (same result, less work)",
        "two",
    ),
    Difference(
        "CLIP distance",
        "cosine distance D_c",
        "spherical 2·arcsin(‖â-b̂‖/2)² (losses.py:4-13)",
        "spherical (≈ θ²/2 against 1-cos θ ≈ θ²/2: the same for small angles); distance='cosine' is the paper's",
        "spherical (distance='cosine' is refused)",
    ),
    Difference(
        "guidance scale, range loss",
        "not stated",
        "clip 1000, range 50 on x̂_0 (arguments.py:55-66, image_editor.py:187-190)",
        "1000 and 50 (the official values)",
        "1000 and 50",
    ),
    Difference(
        "Alg. 1: whether the background loss is on",
        "always: λ·D_bg is Algorithm 1",
        "only with --background_preservation_loss, off by default (arguments.py:75-80, image_editor.py:192)",
        "always",
        "only when lam is set, which plays the flag (with --l2_sim_lambda = λ); the toy world's Algorithm 1 defaults "
        "set λ = 3000, the paper world's leave it unset",
    ),
    Difference(
        "Alg. 1: background loss and weights",
        "λ·D_bg, D_bg = MSE + LPIPS (Alg. 1)",
        "10000·mse(x_in⊙(1-m), x) averaged over B·3·H·W (λ/B per image) + 1000·Σ_i LPIPS(x_in⊙(1-m), x) "
        "(image_editor.py:192-208)",
        "per image λ·(MSE + w·LPIPS) of x̂_0⊙(1-m) against x⊙(1-m); λ = 2500, w = 0.4: the official per-image "
        "weights at its batch of 4",
        "the official formula: λ (the official 10000 when λ = 10000) on the batch mean, LPIPS 0.1·λ summed, against "
        "the full input",
    ),
    Difference(
        "clamping of x̂_0",
        "not stated",
        "never (clip_denoised=False, image_editor.py:174, 240)",
        "clip_denoised (off in the paper world; on in the toy world, see its defaults)",
        "never",
    ),
    Difference(
        "an empty prompt",
        "plain inpainting (project page)",
        'cond_fn returns 0 when prompt == "" (a prompt of spaces guides); results still ranked by the distance to '
        'the embedding of "" (image_editor.py:166-167, 282)',
        "no CLIP and no range loss (Alg. 1 keeps its background loss); a prompt of spaces is empty too; results "
        "not ranked (distances NaN)",
        'no guidance when prompt == ""; ranked by the distance to "" as the official code does',
    ),
    Difference(
        "background noise",
        "one per image",
        "one draw per step for a batch (q_sample of the (1,3,H,W) input, tiled), new for every iteration "
        "(image_editor.py:215-218, 229)",
        "one per sample",
        "one per step for each group of 4 samples (the official batch), drawn from the group's own stream",
    ),
    Difference(
        "final image",
        "x_0, the end of the chain (Alg. 2)",
        "x̂_0 of the last step, background pasted for Alg. 2 only (image_editor.py:262-278)",
        "the last sample x_0, background pasted (Alg. 2)",
        "x̂_0 of the last step, pasted for Alg. 2 only",
    ),
    Difference(
        "output size and background",
        "not stated",
        "the model's 256x256, with the background of the LANCZOS-resized input (image_editor.py:137, 270-280)",
        "the input's own size: the result resized back (antialiased bicubic), the original background pasted",
        "the model's size, with the background of the LANCZOS-resized input",
    ),
    Difference(
        "8-bit output",
        "not stated",
        "truncated: to_pil_image's mul(255).byte() (image_editor.py:280)",
        "rounded",
        "rounded: truncation lowers every pixel by half a level on average and bdlib keeps one writer",
    ),
    Difference(
        "ranking: what CLIP sees",
        "the CLIP score of each result",
        "x̂_0·m in [0, 1], black outside the mask, resized bilinearly without antialiasing (torchvision 0.10's "
        "tensor resize), not normalised (image_editor.py:123-128, 279-284)",
        "the guidance view: mid-grey outside the mask, CLIP-normalised",
        "the official view, resized without antialiasing",
    ),
    Difference(
        "augmentation warps",
        "affine and perspective warps",
        "kornia RandomAffine(15°, translate=0.1, p 0.7, border padding), then RandomPerspective(0.7, p 0.7, zero "
        "padding) (augmentations.py:12-15); kornia reads the single translate=0.1 as no horizontal shift and "
        "±10 % vertical (kornia 0.6.3 and 0.9.0 alike)",
        "one composed homography, border padding, shifts up to 10 % both ways",
        "kornia's two warps with their parameters drawn from bdlib's streams: vertical shifts only",
    ),
    Difference(
        "input resizing",
        "not stated",
        "PIL LANCZOS (image_editor.py:137)",
        "antialiased bicubic",
        "PIL LANCZOS",
    ),
    Difference(
        "mask file",
        "a binary mask",
        "R channel > 0 after a nearest resize (image_editor.py:149-157)",
        "luma (or alpha) above half its range; resized nearest",
        "R channel > 0",
    ),
    Difference(
        "512x512 class-conditional model",
        "not used",
        "--model_output_size 512 loads 512x512_diffusion.pt and draws a random class at every step "
        "(image_editor.py:49, 76, 251; gaussian_diffusion.py:504-509)",
        "not supported",
        "not supported: bdlib loads the 256x256 unconditional model only, and no machine of this project can "
        "fetch or test the 512 checkpoint",
    ),
    Difference(
        "noise-aware CLIP",
        "not used",
        "none",
        "noise_aware=True (a variant the course measures)",
        "refused",
    ),
    Difference(
        "precision",
        "not stated",
        "fp16 UNet (use_fp16) and fp16 CLIP on CUDA (image_editor.py:60, 84-88)",
        "float32 (precision='fp32')",
        "unchanged: a separate setting, precision",
    ),
    Difference(
        "default samples and seed",
        "many samples, ranked",
        "batch 4 × 8 iterations, seed 404 (arguments.py:96-111)",
        "1 sample, seed 0",
        "unchanged: pass samples and seed",
    ),
)


def differences_table() -> str:
    """:data:`DIFFERENCES` as a Markdown table."""
    head = ("choice", "paper", "official code", "bdlib default", "bdlib, official=True")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in DIFFERENCES:
        cells = (row.choice, row.paper, row.official_code, row.bdlib_default, row.bdlib_official)
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ the warps
def warp_parameters(uniform: torch.Tensor, size: int) -> tuple[dict, dict]:
    """kornia's parameters of ``RandomAffine`` and ``RandomPerspective`` for ``len(uniform)`` copies of a
    ``size``² image, from ``uniform`` (count, 13) numbers in [0, 1): the use of each warp (p = 0.7), the angle, the
    shifts (the horizontal one is always 0, as kornia reads ``translate=0.1``), the corners' offsets."""
    u = uniform.float()
    count = u.shape[0]
    half = (size - 1) / 2
    affine = {
        "translations": torch.stack([torch.zeros(count), (u[:, 3] * 2 - 1) * TRANSLATE * size], dim=1),
        "center": torch.tensor([[half, half]]).expand(count, 2).clone(),
        "scale": torch.ones(count, 2),
        "angle": (u[:, 1] * 2 - 1) * DEGREES,
        "shear_x": torch.zeros(count),
        "shear_y": torch.zeros(count),
        "batch_prob": (u[:, 0] < P_WARP).float(),
        "forward_input_shape": torch.tensor([count, 3, size, size]),
    }
    corners = torch.tensor([[0.0, 0.0], [size - 1, 0.0], [size - 1, size - 1], [0.0, size - 1]])
    inwards = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])
    start = corners.expand(count, 4, 2).clone()
    perspective = {
        "start_points": start,
        "end_points": start + DISTORTION * size / 2 * u[:, 5:].reshape(count, 4, 2) * inwards,
        "batch_prob": (u[:, 4] < P_WARP).float(),
        "forward_input_shape": torch.tensor([count, 3, size, size]),
    }
    return affine, perspective


def warp(copies: torch.Tensor, affine: dict, perspective: dict) -> torch.Tensor:
    """The official warps with given parameters: kornia's own RandomAffine (border padding), then RandomPerspective."""
    device = copies.device
    on_device = [{k: v.to(device) for k, v in params.items()} for params in (affine, perspective)]
    warped = K.RandomAffine(degrees=DEGREES, translate=TRANSLATE, p=P_WARP, padding_mode="border")(
        copies, params=on_device[0]
    )
    return K.RandomPerspective(DISTORTION, p=P_WARP)(warped, params=on_device[1])


class OfficialViews:
    """``ImageAugmentations(size, views)`` with bdlib's randomness: copy 0 clean, copies 1..N-1 warped, copy-major;
    sample ``i``'s warps come from sample ``i``'s stream (13 numbers per copy)."""

    def __init__(self, views: int) -> None:
        self.views = views

    def __call__(self, images: torch.Tensor, randomness: SampleStreams) -> torch.Tensor:
        if self.views == 1:
            return images
        batch, size, copies = images.shape[0], images.shape[-1], self.views - 1
        uniform = randomness.uniform_params((copies, 13)).transpose(0, 1).reshape(copies * batch, 13)
        return torch.cat([images, warp(images.repeat(copies, 1, 1, 1), *warp_parameters(uniform, size))])


# ------------------------------------------------------------------------------------------------ the step
def clip_input(diffusion: Diffusion, pred_x0: torch.Tensor, x_t: torch.Tensor, t: int) -> torch.Tensor:
    """What the official CLIP sees: ``x̂_0·s + x_t·(1-s)``, ``s = √(1-ᾱ_t)`` of the respaced chain."""
    fac = float(diffusion.sqrt_one_minus_alphas_cumprod[t])
    return pred_x0 * fac + x_t * (1 - fac)


def official_loss(
    clip,
    text: torch.Tensor | None,
    x: torch.Tensor,
    m: torch.Tensor,
    diffusion: Diffusion,
    views=None,
    *,
    s: float = 1000.0,
    r: float = 50.0,
    mse_weights: torch.Tensor | None = None,
    lpips_weights: torch.Tensor | None = None,
    lpips=None,
):
    """The official ``cond_fn``'s loss. ``mse_weights`` (B,): Algorithm 1's L2 weight per image (λ/B: the official
    mean over the batch), None without the background loss; ``lpips_weights`` (B,) likewise for LPIPS."""

    def loss(x_t: torch.Tensor, pred_x0: torch.Tensor, t: torch.Tensor) -> Losses:
        x_in = clip_input(diffusion, pred_x0, x_t, int(t[0]))
        terms, dists = {}, None
        if text is not None:
            dists = d_clip(clip, x_in, m, text, views)
            terms = {"clip": s * dists, "range": r * range_loss(pred_x0)}
        background = x_in * (1 - m)
        if mse_weights is not None:  # mse(x_in ⊙ (1-m), x): the target is the whole input
            terms["bg"] = mse_weights * (background - x).pow(2).mean(dim=(1, 2, 3))
        if lpips_weights is not None and lpips is not None:
            terms["bg_lpips"] = lpips_weights * lpips(background, x.expand_as(background), normalize=False).flatten()
        return Losses(terms, dists)

    return loss


def two_pass_guidance(denoise, x_t: torch.Tensor, t: torch.Tensor, loss):
    """The official ``cond_fn`` inside ``p_sample``: the gradient from a pass with grad, μ and Σ from a second pass
    without it (the same numbers as one pass; the official code pays for both)."""
    _, grad, losses = guidance(denoise, x_t, t, loss)
    with torch.no_grad():
        out = denoise(x_t, t)
    return out, grad, losses


def blended_step(denoise, diffusion: Diffusion, x_t, t: int, *, x, m, loss, noise, bg_noise, guide, update) -> EditStep:
    """One official step of Algorithm 2: the paper's, but the background is noised to level t, not t-1."""
    ts = at(t, x_t)
    out, grad, losses = guide(denoise, x_t, ts, loss)
    fg, pred_x0 = update(diffusion, out, x_t, ts, noise, grad)
    bg = noised_input(diffusion, x, t, bg_noise)  # q(x_t | x): postprocess_fn's level
    return EditStep(
        t,
        int(diffusion.timestep_map[t]),
        x_t,
        pred_x0,
        out.mean,
        out.variance,
        grad,
        losses,
        fg,
        bg,
        blend_images(fg, bg, m),
    )


def group_streams(seed: int, indices, device) -> SampleStreams:
    """The streams of samples ``indices`` of an official edit: sample ``i`` shares its background noise with the
    other samples of its official batch, ``i // 4``."""
    return SampleStreams(seed, [(int(i),) for i in indices], [int(i) // OFFICIAL_BATCH for i in indices], device)


def edit(
    denoise,
    diffusion: Diffusion,
    x: torch.Tensor,
    m: torch.Tensor,
    k: int,
    loss,
    streams: SampleStreams,
    *,
    algorithm: str,
    guide: Callable = two_pass_guidance,
    update: Callable = ddpm_update,
    callback=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The official chain from ``x`` noised to ``k``: ``(result, the last x̂_0 before the paste)``."""
    shape = x.shape[1:]
    x_k = diffusion.q_sample(x, at(k, x), streams.randn(shape))

    def step(x_t: torch.Tensor, t: int) -> EditStep:
        noise = streams.randn(shape)
        if algorithm == "local":
            return local_step(denoise, diffusion, x_t, t, loss=loss, noise=noise, guide=guide, update=update)
        bg_noise = streams.randn_shared(shape)  # one per step for each official batch
        return blended_step(
            denoise, diffusion, x_t, t, x=x, m=m, loss=loss, noise=noise, bg_noise=bg_noise, guide=guide, update=update
        )

    for record in chain(x_k, k, step):
        if callback is not None:
            callback(record)
    final = record.pred_x0  # x̂_0 of the last step
    return (final if algorithm == "local" else blend_images(final, x, m)), final


# ------------------------------------------------------------------------------------------------ inputs, ranking
def resize_image(image: torch.Tensor, size: int) -> torch.Tensor:
    """The official input resize: PIL LANCZOS of the 8-bit picture (1, 3, size, size) in [-1, 1]."""
    if image.shape[-2:] == (size, size):
        return image
    array = ((image[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    resized = np.asarray(Image.fromarray(array).resize((size, size), Image.LANCZOS))
    return torch.from_numpy(resized.copy()).permute(2, 0, 1)[None].float().div(127.5).sub(1)


def resize_mask(mask: torch.Tensor, size: int) -> torch.Tensor:
    """The official mask resize: PIL NEAREST of the binary mask picture."""
    if mask.shape[-2:] == (size, size):
        return mask
    picture = Image.fromarray((mask[0, 0].numpy() * 255).astype(np.uint8))
    return torch.from_numpy(np.asarray(picture.resize((size, size), Image.NEAREST)) > 0).float()[None, None]


@torch.no_grad()
def rank_distances(clip, images: torch.Tensor, mask: torch.Tensor, text_embed: torch.Tensor) -> torch.Tensor:
    """The official ranking (``unaugmented_clip_distance``): ``x/2 + ½`` clamped, masked to black, resized bilinearly
    without antialiasing, not normalised; the spherical distance to the prompt."""
    pixels = images.add(1).div(2).clamp(0, 1) * mask
    if pixels.shape[-1] != clip.input_resolution:
        size = (clip.input_resolution, clip.input_resolution)
        pixels = F.interpolate(pixels, size=size, mode="bilinear", antialias=False, align_corners=False)
    return clip_distance(clip.encode_pixels(pixels).to(pixels.dtype), text_embed.to(pixels.dtype), "spherical")
