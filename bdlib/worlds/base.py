"""A *world*: the networks an edit needs, behind one interface for the toy models and the paper's.

Every algorithm and notebook takes a :class:`World` and never asks which one it has: the diffusion
UNet and its schedule, a CLIP (and optionally a noise-aware CLIP and LPIPS), the image size, the
default settings of the method, and what the world can do (``capabilities``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import torch
from torch import nn

from bdlib.core.diffusion import Diffusion
from bdlib.core.settings import MethodSettings


@dataclass(eq=False)
class World:
    """The models of one world. Images are (B, 3, S, S) in [-1, 1] with ``S = image_size``."""

    name: str
    unet: nn.Module
    clip: nn.Module  # a bdlib.core.losses.ClipLike
    image_size: int
    make_diffusion: Callable[[str], Diffusion]  # respacing -> diffusion
    defaults: MethodSettings  # Algorithm 2's (and every shared knob's) defaults
    check_prompt: Callable[[str], None]  # raises ValueError naming the problem
    local_defaults: MethodSettings | None = None  # Algorithm 1's, where they differ (None: defaults, algorithm local)
    noise_aware_clip: nn.Module | None = None
    lpips: Callable[..., torch.Tensor] | None = None
    oracle: nn.Module | None = None
    description: str = ""
    capabilities: frozenset[str] = field(default_factory=frozenset)
    # working memory of one sample in flight on the CPU, per pixel of the world's images, at 8 CLIP views (a
    # measurement; 0: unknown, not checked). bdlib.edit scales it by the pixels and by views / 8 above 8 views
    sample_bytes_per_pixel: int = 0

    def __post_init__(self) -> None:
        self._diffusion = lru_cache(maxsize=8)(self.make_diffusion)
        self._text_cache: dict[tuple[str, bool], torch.Tensor] = {}

    def defaults_for(self, algorithm: str) -> MethodSettings:
        """The default settings of ``algorithm``: ``"blended"`` (Algorithm 2) or ``"local"`` (Algorithm 1)."""
        if algorithm == "local":
            return self.local_defaults or self.defaults.with_(algorithm="local")
        return self.defaults.with_(algorithm=algorithm)

    @property
    def device(self) -> torch.device:
        """The networks' device (the CPU for a UNet that is a plain function, as tests build)."""
        return next(self.unet.parameters()).device if isinstance(self.unet, nn.Module) else torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """The networks' dtype, which an edit computes in: float32, or float64 (the toy world, so that a picture does
        not depend on the CPU's thread count or the batch size)."""
        return next(self.unet.parameters()).dtype if isinstance(self.unet, nn.Module) else torch.float32

    def tensor(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` on the world's device, in its dtype."""
        return x.to(self.device, self.dtype)

    def diffusion(self, respacing: str | None = None) -> Diffusion:
        """The world's diffusion respaced as asked (default: the default settings' respacing); cached."""
        return self._diffusion(respacing or self.defaults.respacing)

    def guidance_clip(self, noise_aware: bool = False) -> nn.Module:
        """The CLIP that guides: the noise-aware one if asked (and available), else the plain one."""
        if not noise_aware:
            return self.clip
        if self.noise_aware_clip is None:
            raise ValueError(f"the {self.name} world has no noise-aware CLIP: use noise_aware=False")
        return self.noise_aware_clip

    def encode_prompt(self, prompt: str, noise_aware: bool = False) -> torch.Tensor:
        """The text embedding (1, D) of ``prompt`` for the guiding CLIP, computed once and cached."""
        key = (prompt, noise_aware)
        if key not in self._text_cache:
            self.check_prompt(prompt)
            with torch.no_grad():
                self._text_cache[key] = self.guidance_clip(noise_aware).encode_text([prompt])
        return self._text_cache[key]

    def compile_unet(self, **options) -> World:
        """Replace the UNet by ``torch.compile(unet, **options)`` (in place, once) and return the world.

        Results match the eager UNet up to float rounding. The first call at each new input shape compiles,
        which costs far more than an edit (benchmarks/README.md has the measured times), so this pays only
        for many edits at one batch size.
        """
        if not hasattr(self.unet, "_orig_mod"):  # already an OptimizedModule
            self.unet = torch.compile(self.unet, **options)
        return self

    def to(self, device: str | torch.device | torch.dtype) -> World:
        """Move every network to ``device`` (in place) and return the world. A dtype casts the networks an edit
        runs (UNet, CLIPs, LPIPS), not the oracle, which judges float32 pictures."""
        modules = [self.unet, self.clip, self.noise_aware_clip, self.lpips]
        if not isinstance(device, torch.dtype):
            modules.append(self.oracle)
        for module in modules:
            if isinstance(module, nn.Module):
                module.to(device)
        self._text_cache.clear()
        return self
