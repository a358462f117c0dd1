"""The paper's world: guided-diffusion's 256x256 unconditional UNet, CLIP ViT-B/16 and LPIPS-VGG.

``load_paper_world()`` reads the official checkpoints from the bdlib cache (fetch them once with
``python -m bdlib download paper``). ``random_weights=True`` builds the exact architectures with random
weights instead: nothing to download, useless pictures, but every code path and every timing is real.
Defaults are the official ones: 100 respaced steps, start at index 74 (skip 25), 8 augmentations,
guidance 1000, range 50, spherical distance.
"""

from __future__ import annotations

import os

import torch

from bdlib.core.diffusion import create_diffusion
from bdlib.core.settings import MethodSettings
from bdlib.nets.clip_adapter import count_tokens, load_clip, random_clip, verify_official_clip
from bdlib.nets.lpips_adapter import load_lpips
from bdlib.nets.unet import paper_unet
from bdlib.runtime.randomness import seeded_construction
from bdlib.worlds.base import World
from bdlib.worlds.paper.checkpoints import check_official_size, check_state_dict, checkpoint_path, load_unet_state_dict

CLIP_CONTEXT = 77
#: Working memory of one sample of an edit in flight on the CPU, per pixel: benchmarks/results/edit_paper_cpu_1step.json
#: measured a peak of 9.9 GB (process RSS, 256x256, batch 1, float32, 8 views) of which about 3.5 GB are the weights
#: and the runtime: about 6 GiB for 65,536 pixels.
PAPER_SAMPLE_BYTES_PER_PIXEL = 6 * 2**30 // (256 * 256)


def check_clip_prompt(prompt: str) -> None:
    """Raise a ValueError if ``prompt`` does not fit CLIP's 77-token context."""
    tokens = count_tokens(prompt)
    if tokens > CLIP_CONTEXT:
        raise ValueError(
            f"the prompt has {tokens} tokens but CLIP reads at most {CLIP_CONTEXT} (start and end tokens "
            "included): shorten it"
        )


def load_paper_world(
    device: str | torch.device = "cpu",
    cache_dir: str | os.PathLike[str] | None = None,
    random_weights: bool = False,
    with_lpips: bool = True,
    seed: int = 0,
) -> World:
    """The paper's models on ``device``, from the cache (or with random weights, clearly labelled)."""
    if not random_weights:  # missing or cut files are reported before the 552M-parameter UNet is built
        unet_path, clip_path = checkpoint_path("unet", cache_dir), checkpoint_path("clip", cache_dir)
        check_official_size("unet", unet_path)
        verify_official_clip(clip_path)
    with seeded_construction(seed):  # the initial (random) weights depend on the seed alone
        unet, _ = paper_unet("100")
    if random_weights:
        clip_model = random_clip("ViT-B/16", seed=seed)
    else:
        state = load_unet_state_dict(unet_path)
        check_state_dict(unet, state)
        unet.load_state_dict(state)
        clip_model = load_clip("ViT-B/16", device="cpu", cache_dir=cache_dir)
    with seeded_construction(seed):  # a random VGG trunk, when asked, depends on the seed alone
        lpips_model = load_lpips(pretrained=not random_weights) if with_lpips else None
    label = "RANDOM weights (architecture and timings only)" if random_weights else "official checkpoints"
    world = World(
        name="paper",
        unet=unet.eval().requires_grad_(False),
        clip=clip_model,
        image_size=256,
        make_diffusion=lambda respacing: create_diffusion(1000, "linear", respacing, learn_sigma=True),
        defaults=MethodSettings(),
        check_prompt=check_clip_prompt,
        lpips=lpips_model,
        description=f"guided-diffusion 256x256 uncond + CLIP ViT-B/16 + LPIPS-VGG, {label}",
        capabilities=frozenset({"lpips"} if with_lpips else set()) | ({"random_weights"} if random_weights else set()),
        sample_bytes_per_pixel=PAPER_SAMPLE_BYTES_PER_PIXEL,
    )
    return world.to(device)
