"""CLIP for guidance: a thin, differentiable wrapper over OpenAI's ``clip`` package (``clip-anytorch``).

Blended Diffusion scores an image against a prompt by the distance between CLIP embeddings
(Radford et al. 2021). Guidance needs gradients with respect to the pixels, so the image path must be
differentiable end to end, which ``clip``'s own PIL preprocessing is not. :meth:`ClipModel.preprocess`
redoes that preprocessing with tensor operations:

    x01 = (x + 1) / 2                                   # [-1, 1] -> [0, 1]
    x01 = resize_shortest_side(x01, R)                  # bicubic, antialiased (as PIL does)
    x01 = center_crop(x01, R)
    pixels = (x01 - mean) / std                         # CLIP's per-channel normalisation

with ``R = input_resolution`` (224 for ViT-B/16). PIL's bicubic uses the Keys kernel with ``a = -0.5``
widened by the downscale factor; ``torch.nn.functional.interpolate(..., antialias=True)`` implements the
same filter, so the two agree up to PIL's 8-bit rounding (see ``tests/test_clip_adapter.py``). Without
``antialias`` torch uses ``a = -0.75`` and no widening, and the result differs visibly.

The official Blended Diffusion guidance instead shrinks with ``F.adaptive_avg_pool2d`` and then calls
:func:`normalize01`; that path lives in the guidance module and calls :meth:`ClipModel.encode_pixels`.

Weights are never downloaded here: :func:`load_clip` reads the bdlib cache or a local file and names
``python -m bdlib download paper`` when the file is missing. It checks the cached file's SHA-256 before
reading it and never runs code stored in a file: the official TorchScript archives are read as data
(:mod:`bdlib.runtime.torchscript_data`), not with ``torch.jit.load``, which would run the archive's code.
:func:`random_clip` builds the exact ViT-B/16 architecture with random weights for offline tests.
"""

from __future__ import annotations

import functools
import os
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bdlib.runtime.safe_load import DamagedFileError, load_torch_file
from bdlib.runtime.torchscript_data import UnsafeArchiveError, read_torchscript_tensors

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Constructor arguments of clip.model.CLIP for the paper's model (read off the official checkpoint).
CLIP_CONFIGS: dict[str, dict[str, int]] = {
    "ViT-B/16": dict(
        embed_dim=512,
        image_resolution=224,
        vision_layers=12,
        vision_width=768,
        vision_patch_size=16,
        context_length=77,
        vocab_size=49408,
        transformer_width=512,
        transformer_heads=8,
        transformer_layers=12,
    ),
}


def _clip_modules():
    """Import ``clip`` lazily (it is slow to import and warns about ``pkg_resources``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        import clip
        import clip.model
        import clip.simple_tokenizer
    return clip


@functools.lru_cache(maxsize=1)
def _tokenizer():
    return _clip_modules().simple_tokenizer.SimpleTokenizer()


def count_tokens(prompt: str) -> int:
    """Number of tokens CLIP uses for ``prompt``, including the start and end tokens."""
    return len(_tokenizer().encode(prompt)) + 2


def normalize01(images01: torch.Tensor) -> torch.Tensor:
    """CLIP's normalisation of [0, 1] images: ``(x - mean) / std`` per channel.  # (B, 3, H, W)"""
    mean = images01.new_tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = images01.new_tensor(CLIP_STD).view(1, 3, 1, 1)
    return (images01 - mean) / std


def resize_and_center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """Differentiable twin of torchvision's ``Resize(size, BICUBIC)`` then ``CenterCrop(size)``.

    The shorter side becomes ``size`` and the longer side ``int(size * long / short)`` (torchvision's
    rounding), with antialiased bicubic interpolation; then the central ``size x size`` square is kept,
    its offset rounded as torchvision does. No clamping, so gradients flow everywhere.
    """
    if images.dim() != 4:
        raise ValueError(f"expected images of shape (B, C, H, W), got {tuple(images.shape)}")
    height, width = images.shape[-2:]
    short, long = min(height, width), max(height, width)
    new_long = int(size * long / short)
    new_h, new_w = (size, new_long) if height <= width else (new_long, size)
    if (new_h, new_w) != (height, width):
        images = F.interpolate(images, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True)
    top = int(round((new_h - size) / 2.0))
    left = int(round((new_w - size) / 2.0))
    return images[..., top : top + size, left : left + size]


class ClipModel(nn.Module):
    """A frozen ``clip.model.CLIP`` with a differentiable image path for [-1, 1] tensors.

    Attributes:
        model: the wrapped ``clip.model.CLIP`` (eval mode, ``requires_grad`` off; gradients still flow
            to the inputs).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.requires_grad_(False)
        self.train(False)

    @classmethod
    def from_model(cls, model: nn.Module) -> ClipModel:
        """Wrap an already built ``clip.model.CLIP`` (from ``clip.load`` or :func:`random_clip`)."""
        return cls(model)

    @property
    def input_resolution(self) -> int:
        """Side of the square images the vision tower takes (224 for ViT-B/16)."""
        return int(self.model.visual.input_resolution)

    @property
    def embed_dim(self) -> int:
        """Dimension D of the joint image-text embedding (512 for ViT-B/16)."""
        return int(self.model.text_projection.shape[1])

    @property
    def context_length(self) -> int:
        """Maximum tokens per prompt, start and end tokens included (77)."""
        return int(self.model.context_length)

    @property
    def device(self) -> torch.device:
        return self.model.text_projection.device

    def train(self, mode: bool = True) -> ClipModel:
        """CLIP stays in eval mode; ``train()`` is accepted but changes nothing."""
        return super().train(False)

    def tokenize(self, prompts: Sequence[str]) -> torch.Tensor:
        """Token ids, shape (N, context_length); a prompt too long for CLIP raises ``ValueError``."""
        if isinstance(prompts, str):
            raise TypeError("pass a list of prompts, e.g. ['a red ball'], not a single string")
        for prompt in prompts:
            n = count_tokens(prompt)
            if n > self.context_length:
                raise ValueError(
                    f"prompt is too long for CLIP: {n} tokens (start and end tokens included) but the "
                    f"limit is {self.context_length}; shorten it: {prompt[:60]!r}..."
                )
        return _clip_modules().tokenize(list(prompts), context_length=self.context_length)

    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        """Text embeddings, float32, shape (N, D). Not normalised."""
        tokens = self.tokenize(prompts).to(self.device)
        return self.model.encode_text(tokens).float()

    def normalize(self, images01: torch.Tensor) -> torch.Tensor:
        """CLIP's per-channel normalisation of [0, 1] images (what :meth:`encode_pixels` expects)."""
        return normalize01(images01)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """[-1, 1] images of any size (B, 3, H, W) -> CLIP input (B, 3, R, R), differentiably."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W) in [-1, 1], got {tuple(images.shape)}")
        images01 = (images + 1) / 2
        return normalize01(resize_and_center_crop(images01, self.input_resolution))

    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Embed already prepared CLIP input (normalised, R x R); float32, shape (B, D)."""
        size = self.input_resolution
        if pixels.shape[-2:] != (size, size):
            raise ValueError(
                f"CLIP input must be {size}x{size}, got {tuple(pixels.shape[-2:])}; "
                "use encode_image() for images of other sizes"
            )
        return self.model.encode_image(pixels.to(self.device)).float()

    def encode_image(self, images_pm1: torch.Tensor) -> torch.Tensor:
        """Image embeddings of [-1, 1] images (B, 3, H, W); float32, shape (B, D). Not normalised."""
        return self.encode_pixels(self.preprocess(images_pm1))


def random_clip(name_or_config: str | Mapping[str, int] = "ViT-B/16", seed: int = 0) -> ClipModel:
    """The exact CLIP architecture ``name_or_config`` with random weights (no download).

    Uses the ``clip`` package's own ``clip.model.CLIP`` class and its initialisation, under a forked
    RNG seeded with ``seed`` (the global RNG is left as it was). A mapping gives the constructor
    arguments directly (tests use tiny configurations).
    """
    if isinstance(name_or_config, str):
        if name_or_config not in CLIP_CONFIGS:
            raise ValueError(f"no configuration for {name_or_config!r}; known: {sorted(CLIP_CONFIGS)}")
        config = CLIP_CONFIGS[name_or_config]
    else:
        config = dict(name_or_config)
    clip = _clip_modules()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = clip.model.CLIP(**config)
    return ClipModel.from_model(model.float())


_CLIP_META_KEYS = ("input_resolution", "context_length", "vocab_size")  # TorchScript extras


def verify_official_clip(path: Path) -> None:
    """Check the cached ``ViT-B-16.pt`` against its pinned SHA-256 before anything reads it (once per process).

    Raises:
        DamagedFileError: (a ValueError) the hash differs: damaged, cut short, or replaced by another file.
    """
    from bdlib.runtime.download import verified_sha256
    from bdlib.worlds.paper.checkpoints import PAPER_FILES, refetch_hint

    expected = PAPER_FILES["clip"].sha256
    actual = verified_sha256(path, expected)
    if actual is not None:
        raise DamagedFileError(
            f"{path} is not the official CLIP ViT-B/16 file (SHA-256 {actual[:16]}... instead of {expected[:16]}...): "
            f"it is damaged or was replaced, and bdlib reads nothing from it; {refetch_hint(path)}"
        )


def _read_clip_state_dict(path: Path, fix: str) -> dict[str, torch.Tensor]:
    """Tensors of a CLIP file, read as data: the official TorchScript archive (its tensors only; none of the code
    in it runs, see :mod:`bdlib.runtime.torchscript_data`) or a ``torch.save``-d state dict (``weights_only=True``)."""
    if _is_torchscript(path):
        try:
            return read_torchscript_tensors(path)
        except UnsafeArchiveError as error:
            raise DamagedFileError(f"CLIP checkpoint {path}: {error}; {fix}") from None
        except Exception as error:  # a damaged zip or pickle
            reason = f"{type(error).__name__}: {error}"
            raise DamagedFileError(f"CLIP checkpoint {path} is damaged ({reason}); {fix}") from None
    state = load_torch_file(path, "CLIP checkpoint", fix)
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DamagedFileError(f"{path} is neither a CLIP TorchScript archive nor a state dict of tensors; {fix}")
    return dict(state)


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives are zip files with a ``code/`` folder; ``torch.save`` files have none."""
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return any("/code/" in name for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _build_clip(state: dict[str, torch.Tensor], path: Path, fix: str) -> nn.Module:
    """``clip.model.build_model`` on a state dict, with a clear error for a file that is not a CLIP."""
    try:
        model = _clip_modules().model.build_model(dict(state))  # infers the config; leaves float16 weights
    except (KeyError, IndexError, ValueError, RuntimeError) as error:
        raise DamagedFileError(
            f"{path} does not hold CLIP weights (building the model failed: {type(error).__name__}: {error}); {fix}"
        ) from None
    missing = sorted(set(model.state_dict()) - set(state))
    if missing:
        raise DamagedFileError(f"{path} lacks {len(missing)} CLIP weights (e.g. {missing[0]}); {fix}")
    return model


def load_clip(
    name_or_path: str | os.PathLike[str] = "ViT-B/16",
    device: str | torch.device = "cpu",
    cache_dir: str | os.PathLike[str] | None = None,
    dtype: torch.dtype = torch.float32,
) -> ClipModel:
    """Load pretrained CLIP by model name (from the bdlib cache) or from a local ``.pt`` file.

    Never downloads, and never runs code from the file. ``"ViT-B/16"`` reads ``ViT-B-16.pt`` from the cache,
    after checking its SHA-256 against the pinned one (a mismatch raises
    :class:`bdlib.runtime.safe_load.DamagedFileError` before anything is read), and raises
    :class:`bdlib.worlds.paper.checkpoints.MissingCheckpointError` (a ``FileNotFoundError``) naming
    ``python -m bdlib download paper`` when it is missing. TorchScript archives (the official format) are read
    as data (:mod:`bdlib.runtime.torchscript_data`); other files with ``torch.load(weights_only=True)``. The model is
    built by ``clip``'s own ``build_model`` and cast to ``dtype`` (float32 by default, also on GPU; the ``clip``
    package keeps float16 on GPU).
    """
    from bdlib.worlds.paper.checkpoints import checkpoint_path, refetch_hint

    name = os.fspath(name_or_path)
    if name == "ViT-B/16":
        path = checkpoint_path("clip", cache_dir)
        verify_official_clip(path)
        fix = refetch_hint(path)
    elif name in _clip_modules().available_models():
        raise ValueError(
            f"bdlib only registers CLIP 'ViT-B/16' (the paper's); for {name!r} pass the path of a local checkpoint file"
        )
    else:
        path = Path(name).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"CLIP checkpoint {path} not found (expected a model name such as 'ViT-B/16' or the path of a .pt file)"
            )
        fix = "give the path of a CLIP checkpoint (a TorchScript archive from OpenAI, or a saved state dict)"
    state = _read_clip_state_dict(path, fix)
    model = _build_clip(state, path, fix).to(device=device, dtype=dtype)
    # Reload from the file's own tensors so that float32 checkpoints are not rounded through float16.
    wanted = model.state_dict().keys()
    model.load_state_dict({k: v for k, v in state.items() if k in wanted and k not in _CLIP_META_KEYS})
    return ClipModel.from_model(model)
