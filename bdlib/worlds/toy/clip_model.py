"""The toy CLIP: a small image convnet and a small text transformer trained contrastively on toy scenes.

It offers the interface of :class:`bdlib.nets.clip_adapter.ClipModel` (``input_resolution``, ``embed_dim``,
``tokenize``, ``encode_text``, ``normalize``, ``preprocess``, ``encode_pixels``, ``encode_image``), so the
guidance code runs unchanged in either world. Embeddings are returned unnormalised, as CLIP's are.

Architecture (``TOY_CLIP_CONFIG``; 1,289,089 parameters):

- image: ``[-1, 1]`` pixels -> 3x3 conv stem (32 ch, 32x32) -> pre-activation residual blocks with
  GroupNorm (64 ch at 16x16, 128 ch at 8x8 and 4x4) -> mean- and max-pooled features -> linear to ``D``;
- text: word tokens (:mod:`bdlib.worlds.toy.tokenizer`) + learned positions -> 2 pre-norm transformer
  layers (width 128, 4 heads) -> LayerNorm -> the feature at the end token -> linear to ``D`` (= 128);
- a learnable temperature ``logit_scale = log(1/τ)``, started at ``log(1/0.07)`` and clamped to
  ``log 100`` as in CLIP (Radford et al. 2021).

Training (:func:`toy_clip_step_fn`): each batch is half full scenes with their captions and half masked
single objects (``x ⊙ m``, the region = the object's box grown by 1-3 px, or its soft mask dilated) with
"a COLOUR SHAPE"; a part of the batch goes through the extending augmentations. The loss is CLIP's
symmetric InfoNCE over the batch's *distinct* captions (single-object captions repeat often: there are 21)::

    s_ij = exp(ls) · <f(x_i), g(c_j)> / (|f(x_i)| |g(c_j)|)          images i, distinct captions j
    L_img = mean_i CE(s_i·, j(i))                  each image against every distinct caption
    L_txt = mean_j  -Σ_i q_ji log softmax_i(s_·j)  q_ji = 1/n_j for the n_j images captioned c_j
    L = (L_img + L_txt) / 2
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bdlib.nets.clip_adapter import resize_and_center_crop
from bdlib.runtime.precision import at_least_float32

from . import tokenizer as tok
from .region_views import box_masks, masked, object_regions, warp_part
from .scenes import SceneBatch, generate_scenes
from .trainer import TrainConfig
from .vocab import COLORS, SHAPES, build_caption, object_phrase
from .weights_io import export_checkpoint, load_shipped

TOY_CLIP_CONFIG: dict = {"width": 32, "embed_dim": 128, "text_width": 128, "text_layers": 2, "text_heads": 4}
TOY_CLIP_BATCH = 128
TOY_CLIP_TRAINING: dict = {
    "seed": 1,
    "lr": 1e-3,
    "weight_decay": 0.01,
    "warmup_steps": 200,
    "ema_decay": 0.998,
    "bf16": True,
}
EVAL_SEED = 7_000_000_000  # far from every training step's generator seed (seed · 1_000_003 + step)
CLASS_PROMPTS: tuple[str, ...] = tuple(object_phrase(c, s) for c in COLORS for s in SHAPES)
"""The 21 single-object prompts; class ``k`` = colour ``k // 3``, shape ``k % 3``."""


class ResBlock(nn.Module):
    """Pre-activation residual block ``x + conv(silu(FiLM(norm(conv(silu(norm(x)))))))``; FiLM
    (``h · (1 + γ(e)) + β(e)``) only when a conditioning vector ``e`` of size ``cond_dim`` is given."""

    def __init__(self, cin: int, cout: int, stride: int = 1, cond_dim: int | None = None) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(8, cin), nn.Conv2d(cin, cout, 3, stride, 1)
        self.norm2, self.conv2 = nn.GroupNorm(8, cout), nn.Conv2d(cout, cout, 3, 1, 1)
        self.film = nn.Linear(cond_dim, 2 * cout) if cond_dim else None
        if self.film is not None:  # start unconditioned: γ = β = 0
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)
        self.skip = nn.Conv2d(cin, cout, 1, stride) if (cin != cout or stride != 1) else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm2(self.conv1(F.silu(self.norm1(x))))
        if self.film is not None:
            gamma, beta = self.film(cond)[:, :, None, None].chunk(2, dim=1)  # (B, C, 1, 1) each
            h = h * (1 + gamma) + beta
        return self.skip(x) + self.conv2(F.silu(h))


class ConvImageEncoder(nn.Module):
    """(B, 3, 32, 32) -> (B, D). With ``cond_dim`` every block is FiLM-conditioned on a vector (noise-aware CLIP)."""

    def __init__(self, width: int = 32, embed_dim: int = 128, cond_dim: int | None = None) -> None:
        super().__init__()
        w = width
        self.stem = nn.Conv2d(3, w, 3, 1, 1)
        plan = [(w, 2 * w, 2), (2 * w, 2 * w, 1), (2 * w, 4 * w, 2), (4 * w, 4 * w, 1), (4 * w, 4 * w, 2)]
        self.blocks = nn.ModuleList(ResBlock(a, b, s, cond_dim) for a, b, s in plan)
        self.norm = nn.GroupNorm(8, 4 * w)
        self.proj = nn.Linear(8 * w, embed_dim)

    def forward(self, pixels: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = self.stem(pixels)  # (B, w, 32, 32)
        for block in self.blocks:
            h = block(h, cond)
        h = F.silu(self.norm(h))  # (B, 4w, 4, 4)
        return self.proj(torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1))  # (B, D)


class TextEncoder(nn.Module):
    """Token ids (N, L) -> (N, D): embeddings + positions, pre-norm transformer, feature at the end token."""

    def __init__(self, width: int = 128, layers: int = 2, heads: int = 4, embed_dim: int = 128) -> None:
        super().__init__()
        self.token = nn.Embedding(tok.VOCAB_SIZE, width)
        self.position = nn.Parameter(torch.randn(tok.CONTEXT_LENGTH, width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            width, heads, 2 * width, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, embed_dim, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.token(tokens) + self.position[: tokens.shape[1]]  # (N, L, width)
        h = self.transformer(h, src_key_padding_mask=tokens == tok.PAD_ID)
        h = self.norm(h[torch.arange(tokens.shape[0]), tok.end_positions(tokens)])  # (N, width)
        return self.proj(h)


class ToyClip(nn.Module):
    """Toy CLIP with the :class:`~bdlib.nets.clip_adapter.ClipModel` interface (see the module docstring)."""

    input_resolution = 32
    context_length = tok.CONTEXT_LENGTH

    def __init__(
        self,
        width: int = 32,
        embed_dim: int = 128,
        text_width: int = 128,
        text_layers: int = 2,
        text_heads: int = 4,
        cond_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.visual = ConvImageEncoder(width, embed_dim, cond_dim)
        self.text = TextEncoder(text_width, text_layers, text_heads, embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    @property
    def embed_dim(self) -> int:
        """Dimension D of the joint embedding."""
        return self.visual.proj.out_features

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    def tokenize(self, prompts: Sequence[str]) -> torch.Tensor:
        """Token ids (N, 12); an unknown word raises the toy vocabulary's ``ValueError``."""
        return tok.tokenize(prompts, self.context_length)

    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        """Text embeddings, float32, (N, D). Not normalised."""
        return self.text(self.tokenize(prompts).to(self.device)).to(at_least_float32(self.logit_scale.dtype))

    def normalize(self, images01: torch.Tensor) -> torch.Tensor:
        """``(x - 0.5) / 0.5`` per channel: [0, 1] images back to the [-1, 1] the encoder reads."""
        return (images01 - 0.5) / 0.5

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """[-1, 1] images (B, 3, H, W) -> encoder input (B, 3, 32, 32), differentiably."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W) in [-1, 1], got {tuple(images.shape)}")
        images01 = resize_and_center_crop((images + 1) / 2, self.input_resolution)
        return self.normalize(images01)

    def _check_pixels(self, pixels: torch.Tensor) -> None:
        size = self.input_resolution
        if pixels.dim() != 4 or pixels.shape[1:] != (3, size, size):
            raise ValueError(
                f"toy CLIP input must be (B, 3, {size}, {size}), got {tuple(pixels.shape)}; "
                "use encode_image() for images of other sizes"
            )

    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Embed prepared input (normalised, 32x32); float32, (B, D). Not normalised."""
        self._check_pixels(pixels)
        return self.visual(pixels.to(self.device)).to(at_least_float32(self.logit_scale.dtype))

    def encode_image(self, images_pm1: torch.Tensor) -> torch.Tensor:
        """Image embeddings of [-1, 1] images (B, 3, H, W); float32, (B, D). Not normalised."""
        return self.encode_pixels(self.preprocess(images_pm1))


def contrastive_loss(
    image_emb: torch.Tensor, text_emb: torch.Tensor, caption_index: torch.Tensor, logit_scale: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric InfoNCE over distinct captions (module docstring). ``image_emb`` (B, D), ``text_emb`` (U, D)
    for the U distinct captions, ``caption_index`` (B,) the caption of every image. Returns (loss, accuracy)."""
    scale = logit_scale.clamp(max=math.log(100.0)).exp()
    logits = scale * F.normalize(image_emb.float(), dim=-1) @ F.normalize(text_emb.float(), dim=-1).T  # (B, U)
    loss_img = F.cross_entropy(logits, caption_index)
    targets = F.one_hot(caption_index, text_emb.shape[0]).T.float()  # (U, B)
    targets = targets / targets.sum(dim=1, keepdim=True)
    loss_txt = -(targets * F.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
    accuracy = (logits.argmax(dim=1) == caption_index).float().mean()
    return (loss_img + loss_txt) / 2, accuracy


def training_views(
    batch: SceneBatch, generator: torch.Generator, images: torch.Tensor | None = None
) -> tuple[torch.Tensor, list[str]]:
    """Half full scenes (with captions), half masked single objects ("a COLOUR SHAPE") of ``batch``.
    ``images`` replaces the scenes' pixels (the noise-aware CLIP passes ``x_t``); the masks stay the scenes'."""
    half = len(batch) // 2
    images = batch.images if images is None else images
    regions = object_regions(batch, generator, margin=(1, 3), soft_fraction=0.25)
    views = torch.cat([images[:half], masked(images, regions.masks.to(images.device))[half:]])
    return views, batch.captions[:half] + regions.captions[half:]


def caption_targets(captions: Sequence[str]) -> tuple[list[str], torch.Tensor]:
    """Distinct captions (in first-seen order) and the index of every caption among them."""
    distinct = list(dict.fromkeys(captions))
    position = {c: i for i, c in enumerate(distinct)}
    return distinct, torch.tensor([position[c] for c in captions])


def toy_clip_step_fn(batch_size: int = TOY_CLIP_BATCH, device: str | torch.device = "cpu", warp_fraction: float = 0.5):
    """A :func:`bdlib.worlds.toy.trainer.train` step: fresh scenes, the mix of views, contrastive loss."""

    def step(model: nn.Module, step_index: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        batch = generate_scenes(batch_size, generator=generator)
        views, captions = training_views(batch, generator)
        views = warp_part(views, generator, warp_fraction).to(device)
        distinct, index = caption_targets(captions)
        text = model.text(tok.tokenize(distinct).to(device))
        loss, acc = contrastive_loss(model.visual(views), text, index.to(device), model.logit_scale)
        return {"loss": loss, "acc": acc, "logit_scale": model.logit_scale.detach().exp()}

    return step


def build_toy_clip() -> ToyClip:
    """A freshly initialised toy CLIP (``TOY_CLIP_CONFIG``)."""
    return ToyClip(**TOY_CLIP_CONFIG)


def toy_clip_train_config(checkpoint: Path, minutes: float, **overrides) -> TrainConfig:
    """The recommended :class:`TrainConfig` of the toy CLIP (batch size: ``TOY_CLIP_BATCH``)."""
    return TrainConfig(
        checkpoint=Path(checkpoint),
        minutes=minutes,
        **{**TOY_CLIP_TRAINING, "meta": {"batch_size": TOY_CLIP_BATCH}, **overrides},
    )


@torch.no_grad()
def zero_shot(
    model: nn.Module, images: torch.Tensor, timesteps: torch.Tensor | None = None, chunk: int = 500
) -> torch.Tensor:
    """(N,) the class (colour · 3 + shape) whose prompt is nearest to each [-1, 1] image in ``CLASS_PROMPTS``.
    ``timesteps`` are passed on to a noise-aware model's ``encode_image``."""
    text = F.normalize(model.encode_text(list(CLASS_PROMPTS)), dim=-1)  # (21, D)
    out = []
    for start in range(0, images.shape[0], chunk):
        part = images[start : start + chunk]
        args = (part,) if timesteps is None else (part, timesteps[start : start + chunk])
        out.append((F.normalize(model.encode_image(*args), dim=-1) @ text.T).argmax(dim=1).cpu())
    return torch.cat(out)


def single_and_masked_sets(n: int, seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Evaluation sets (views, class labels, masks): ``single`` = n one-object scenes (mask all 1); ``masked`` =
    every object of n // 3 three-object scenes, region = its box grown by 2 px, outside = 0. Seeds ``seed``,
    ``seed + 1``."""
    single = generate_scenes(n, seed=seed, min_objects=1, max_objects=1)
    single_labels = single.labels[:, 0, 0] * 3 + single.labels[:, 0, 1]
    three = generate_scenes(max(1, n // 3), seed=seed + 1, min_objects=3, max_objects=3)
    masks = box_masks(three.boxes.reshape(-1, 4), 2.0, 32)  # (3m, 1, H, W), objects in scene order
    views = masked(three.images.repeat_interleave(3, dim=0), masks)
    labels = three.labels.reshape(-1, 2)
    return {
        "single": (single.images, single_labels, torch.ones_like(single.images[:, :1])),
        "masked": (views, labels[:, 0] * 3 + labels[:, 1], masks),
    }


def class_metrics(pred: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Joint, colour-only and shape-only accuracy of class predictions."""
    return {
        "acc": float((pred == labels).float().mean()),
        "color_acc": float((pred // 3 == labels // 3).float().mean()),
        "shape_acc": float((pred % 3 == labels % 3).float().mean()),
    }


def write_json(metrics: dict, out: Path | None) -> dict:
    """Write ``metrics`` to ``out`` (when given) as indented JSON; return them."""
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(metrics, indent=2))
    return metrics


def evaluate_toy_clip(model: ToyClip, n: int = 2100, seed: int = EVAL_SEED, out: Path | None = None) -> dict:
    """Zero-shot 21-way accuracy on fresh scenes: ``single`` (one object, whole image), ``masked`` (an object
    of a 3-object scene, box + 2 px, outside 0), ``masked_warped`` (the same through the augmentations), and
    ``multi_vs_foil`` (full 2-3-object captions against a one-word foil, :func:`caption_vs_foil`)."""
    model = model.eval()
    sets = single_and_masked_sets(n, seed)
    metrics = {"n": n, "seed": seed}
    for name, (images, labels, _) in sets.items():
        metrics[name] = class_metrics(zero_shot(model, images), labels)
    views, labels, _ = sets["masked"]
    warped = warp_part(views, torch.Generator().manual_seed(seed + 2), 1.0)
    metrics["masked_warped"] = class_metrics(zero_shot(model, warped), labels)
    metrics["multi_vs_foil"] = caption_vs_foil(model, max(1, n // 3), seed + 4)
    return write_json(metrics, out)


@torch.no_grad()
def caption_vs_foil(model: ToyClip, n: int, seed: int) -> float:
    """Fraction of 2-3-object scenes whose caption is nearer to the image than a foil: the same caption with one
    object's colour changed (to a colour that does not repeat another object of the scene)."""
    scenes = generate_scenes(n, seed=seed, min_objects=2, max_objects=3)
    g = torch.Generator().manual_seed(seed)
    foils = []
    for i in range(n):
        objects = [(o.color, o.shape) for o in scenes.objects(i)]
        k = int(torch.randint(len(objects), (1,), generator=g))
        color, shape = objects[k]
        options = [(c, shape) for c in COLORS if c != color and (c, shape) not in objects]  # never empty
        objects[k] = options[int(torch.randint(len(options), (1,), generator=g))]
        foils.append(build_caption(objects))
    image = F.normalize(model.encode_image(scenes.images), dim=-1)
    true = (image * F.normalize(model.encode_text(scenes.captions), dim=-1)).sum(dim=-1)
    foil = (image * F.normalize(model.encode_text(foils), dim=-1)).sum(dim=-1)
    return float((true > foil).float().mean())


def export_toy_clip(checkpoint: Path, metrics: dict, path: Path | None = None) -> Path:
    """Ship the EMA weights of a training checkpoint as ``weights/toy_clip.safetensors`` (with its metrics)."""
    return export_checkpoint(checkpoint, "toy_clip", TOY_CLIP_CONFIG, metrics, path)


def load_toy_clip(device: str | torch.device = "cpu") -> ToyClip:
    """The shipped toy CLIP, eval mode, frozen (gradients still flow to the inputs)."""
    return load_shipped("toy_clip", build_toy_clip, device)
