"""The oracle: an independent, supervised judge of what a region of a toy image holds. Never used for guidance.

A guiding CLIP can be fooled: at large guidance scales the edit becomes multicoloured pixel noise that the
CLIP still scores as a match (adversarial examples). Edits are therefore judged by a different network,
trained differently: a small BatchNorm ResNet that reads **4 channels**, the RGB image and the region mask
(``2m - 1``), and is trained with supervised labels on the examples of :mod:`bdlib.worlds.toy.corruptions`
(clean objects, empty background, and corruptions that look like bad diffusion edits).

Architecture (``ORACLE_CONFIG``, width 32; 727,884 parameters): 3x3 stem -> BasicBlocks (32 ch at 32x32,
64 ch at 16x16, 128 ch at 8x8) -> region mean, region max and global mean of the 8x8 features (region =
the mask area-pooled to 8x8) -> MLP -> 7 colour logits, 3 shape logits, 1 present logit, 1 clean logit.

Labels and their meaning (see :mod:`~bdlib.worlds.toy.corruptions` for the full table):

- ``present``: the region holds something other than background (an object, a corrupted object, noise);
- ``color`` / ``shape``: the object's colour and shape, trained only where defined (a clean object; colour
  also for blurred/cut objects and palette blobs; shape also for two-colour and faint objects);
- ``clean``: the region looks like a proper toy render: one intact single-colour object of a known shape
  with crisp edges, or plain background. Multicoloured noise, two colours, heavy blur, a cut, faintness or
  an amorphous blob make it 0; mild noise (σ ≤ 0.04) or blur (σ ≤ 0.6 px) do not.

Loss: ``CE_colour + CE_shape`` (over defined labels) ``+ BCE_present + BCE_clean``.
:meth:`Oracle.judge` reports per region ``color`` and ``shape`` (indices into ``COLORS`` / ``SHAPES``, -1 when
``present < 0.5``), ``present``, ``clean``, and ``confidence`` = ``p_present · max p_colour · max p_shape``
when present, else ``1 - p_present``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .clip_model import EVAL_SEED, write_json
from .corruptions import HELD_OUT_KINDS, KINDS, make_examples
from .region_views import box_masks, empty_regions
from .scenes import generate_scenes
from .trainer import TrainConfig
from .vocab import COLORS, SHAPES, parse_prompt
from .weights_io import export_checkpoint, load_shipped

ORACLE_CONFIG: dict = {"width": 32}
ORACLE_BATCH = 128
ORACLE_TRAINING: dict = {
    "seed": 3,
    "lr": 1e-3,
    "weight_decay": 0.01,
    "warmup_steps": 200,
    "ema_decay": 0.998,
    "bf16": True,
}


class BasicBlock(nn.Module):
    """ResNet basic block ``relu(bn(conv(relu(bn(conv(x))))) + skip(x))`` (He et al. 2016)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.skip = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if (cin != cout or stride != 1)
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.skip(x))


class Oracle(nn.Module):
    """Region judge over (image, mask); see the module docstring."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(4, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        self.layers = nn.Sequential(
            BasicBlock(w, w),
            BasicBlock(w, 2 * w, 2),
            BasicBlock(2 * w, 2 * w),
            BasicBlock(2 * w, 4 * w, 2),
            BasicBlock(4 * w, 4 * w),
        )
        self.head = nn.Sequential(nn.Linear(12 * w, 4 * w), nn.ReLU(), nn.Linear(4 * w, len(COLORS) + len(SHAPES) + 2))

    @property
    def device(self) -> torch.device:
        return self.head[0].weight.device

    def forward(self, images: torch.Tensor, masks: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits: ``color`` (B, 7), ``shape`` (B, 3), ``present`` (B,), ``clean`` (B,). Inputs 32x32."""
        h = self.layers(self.stem(torch.cat([images, 2 * masks - 1], dim=1)))  # (B, 4w, 8, 8)
        m = F.adaptive_avg_pool2d(masks, h.shape[-2:])  # (B, 1, 8, 8)
        region_mean = (h * m).sum(dim=(2, 3)) / m.sum(dim=(2, 3)).clamp(min=1e-3)
        region_max = (h * m - (1 - m) * 1e4).amax(dim=(2, 3)).clamp(min=0)  # features are >= 0 (ReLU)
        out = self.head(torch.cat([region_mean, region_max, h.mean(dim=(2, 3))], dim=1)).float()
        k = len(COLORS)
        return {"color": out[:, :k], "shape": out[:, k : k + len(SHAPES)], "present": out[:, -2], "clean": out[:, -1]}

    def _inputs(self, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images (B, 3, H, W) in [-1, 1], got {tuple(images.shape)}")
        if masks.dim() != 4 or masks.shape[1] != 1 or masks.shape[-2:] != images.shape[-2:]:
            raise ValueError(f"expected masks (B or 1, 1, H, W) matching the images, got {tuple(masks.shape)}")
        masks = masks.expand(images.shape[0], -1, -1, -1).float()
        if images.shape[-1] != 32 or images.shape[-2] != 32:
            images = F.interpolate(images.float(), size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
            masks = F.interpolate(masks, size=(32, 32), mode="area")
        return images.float().to(self.device), masks.to(self.device)

    @torch.no_grad()
    def judge(self, images: torch.Tensor, masks: torch.Tensor) -> dict[str, torch.Tensor]:
        """Judge every region: ``color``, ``shape`` (long, -1 = none), ``present``, ``clean``, ``confidence``
        (float), plus ``color_probs`` (B, 7) and ``shape_probs`` (B, 3). Masks: 1 = the region."""
        logits = self(*self._inputs(images, masks))
        color_p, shape_p = logits["color"].softmax(dim=1), logits["shape"].softmax(dim=1)
        present = torch.sigmoid(logits["present"])
        here = present >= 0.5
        confidence = torch.where(here, present * color_p.amax(dim=1) * shape_p.amax(dim=1), 1 - present)
        return {
            "color": torch.where(here, color_p.argmax(dim=1), -1),
            "shape": torch.where(here, shape_p.argmax(dim=1), -1),
            "present": present,
            "clean": torch.sigmoid(logits["clean"]),
            "confidence": confidence,
            "color_probs": color_p,
            "shape_probs": shape_p,
        }

    @torch.no_grad()
    def judge_text_match(
        self, images: torch.Tensor, masks: torch.Tensor, targets: Sequence[str | tuple[str, str] | None]
    ) -> dict[str, torch.Tensor]:
        """Does each region show its target? A target is "a COLOUR SHAPE", a (colour, shape) pair, or "" / None
        for "nothing" (a removal). ``match``: present, colour and shape right and clean (for nothing: not present
        and clean); ``score``: ``p_present · p_colour · p_shape · p_clean`` (nothing: ``(1 - p_present) · p_clean``)."""
        verdict = self.judge(images, masks)
        if len(targets) != verdict["present"].shape[0]:
            raise ValueError(f"{len(targets)} targets for {verdict['present'].shape[0]} regions; give one per region")
        pairs = [_target_pair(t) for t in targets]
        match, score = [], []
        for i, pair in enumerate(pairs):
            present, clean = verdict["present"][i], verdict["clean"][i]
            if pair is None:
                match.append(bool(present < 0.5 and clean >= 0.5))
                score.append(float((1 - present) * clean))
            else:
                c, s = pair
                match.append(bool(verdict["color"][i] == c and verdict["shape"][i] == s and clean >= 0.5))
                score.append(float(present * verdict["color_probs"][i, c] * verdict["shape_probs"][i, s] * clean))
        return {**verdict, "match": torch.tensor(match), "score": torch.tensor(score)}


def _target_pair(target: str | tuple[str, str] | None) -> tuple[int, int] | None:
    if target is None:
        return None
    objects = parse_prompt(target) if isinstance(target, str) else [tuple(target)]
    if len(objects) > 1:
        raise ValueError(f"the oracle judges one object per region; {target!r} names {len(objects)}")
    if not objects:
        return None
    color, shape = objects[0]
    if color not in COLORS or shape not in SHAPES:
        raise ValueError(f"unknown target {target!r}; colours: {', '.join(COLORS)}; shapes: {', '.join(SHAPES)}")
    return COLORS.index(color), SHAPES.index(shape)


def oracle_loss(
    logits: dict[str, torch.Tensor],
    color: torch.Tensor,
    shape: torch.Tensor,
    present: torch.Tensor,
    clean: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """``CE_colour + CE_shape`` over defined labels (-1 = undefined) ``+ BCE_present + BCE_clean``."""

    def ce(lg: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(lg, y, ignore_index=-1, reduction="sum") / (y >= 0).sum().clamp(min=1)

    terms = {
        "color": ce(logits["color"], color),
        "shape": ce(logits["shape"], shape),
        "present": F.binary_cross_entropy_with_logits(logits["present"], present),
        "clean": F.binary_cross_entropy_with_logits(logits["clean"], clean),
    }
    return {"loss": sum(terms.values()), **terms}


def build_oracle() -> Oracle:
    """A freshly initialised oracle (``ORACLE_CONFIG``)."""
    return Oracle(**ORACLE_CONFIG)


def oracle_step_fn(batch_size: int = ORACLE_BATCH, device: str | torch.device = "cpu"):
    """A trainer step: fresh scenes, one labelled region each (:func:`~bdlib.worlds.toy.corruptions.make_examples`)."""

    def step(model: nn.Module, step_index: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        ex = make_examples(generate_scenes(batch_size, generator=generator), generator)
        logits = model(ex.images.to(device), ex.masks.to(device))
        labels = (ex.color, ex.shape, ex.present, ex.clean)
        return oracle_loss(logits, *(y.to(device) for y in labels))

    return step


def oracle_train_config(checkpoint: Path, minutes: float, **overrides) -> TrainConfig:
    """The recommended :class:`TrainConfig` of the oracle (batch size: ``ORACLE_BATCH``)."""
    return TrainConfig(
        checkpoint=Path(checkpoint),
        minutes=minutes,
        **{**ORACLE_TRAINING, "meta": {"batch_size": ORACLE_BATCH}, **overrides},
    )


def auroc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """Area under the ROC curve = P(score of a positive > score of a negative), ties counted half."""
    diff = positive.view(-1, 1) - negative.view(1, -1)
    return float((diff > 0).float().mean() + 0.5 * (diff == 0).float().mean())


def _judge_all(model: Oracle, images: torch.Tensor, masks: torch.Tensor, chunk: int = 500) -> dict[str, torch.Tensor]:
    parts = [model.judge(images[i : i + chunk], masks[i : i + chunk]) for i in range(0, images.shape[0], chunk)]
    return {k: torch.cat([p[k].cpu() for p in parts]) for k in parts[0]}


def evaluate_oracle(model: Oracle, n: int = 2000, seed: int = EVAL_SEED, out: Path | None = None) -> dict:
    """Accuracy on fresh ground truth and corruption detection (``seed`` disjoint from training):

    ``objects``: every object of n scenes, region = box + 2 px; ``empty``: an empty 12x12 square per scene;
    ``kinds``: ``n // 4`` examples of each corruption kind (``clean_rate`` = fraction judged clean);
    ``auroc_train_kinds``: clean probability, clean/empty/removed vs the training corruptions;
    ``auroc_held_out``: clean objects vs the never-seen ``speckle`` and ``stripes``.
    """
    model = model.eval()
    scenes = generate_scenes(n, seed=seed)
    present = scenes.labels[..., 0].reshape(-1) >= 0
    masks = box_masks(scenes.boxes.reshape(-1, 4)[present], 2.0, 32)
    images = scenes.images.repeat_interleave(scenes.labels.shape[1], dim=0)[present]
    labels = scenes.labels.reshape(-1, 2)[present]
    v = _judge_all(model, images, masks)
    metrics: dict = {
        "n": n,
        "seed": seed,
        "objects": {
            "count": int(present.sum()),
            "color_acc": float((v["color"] == labels[:, 0]).float().mean()),
            "shape_acc": float((v["shape"] == labels[:, 1]).float().mean()),
            "joint_acc": float(((v["color"] == labels[:, 0]) & (v["shape"] == labels[:, 1])).float().mean()),
            "present_rate": float((v["present"] >= 0.5).float().mean()),
            "clean_rate": float((v["clean"] >= 0.5).float().mean()),
        },
    }
    empty_scenes = generate_scenes(n, seed=seed + 1)
    empty, ok = empty_regions(empty_scenes, torch.Generator().manual_seed(seed + 1), side=(12, 12))
    e = _judge_all(model, empty_scenes.images[ok], empty[ok])
    metrics["empty"] = {
        "count": int(ok.sum()),
        "none_acc": float((e["present"] < 0.5).float().mean()),
        "clean_rate": float((e["clean"] >= 0.5).float().mean()),
    }
    clean_p, names = {}, KINDS + HELD_OUT_KINDS
    metrics["kinds"] = {}
    for k, name in enumerate(names):
        g = torch.Generator().manual_seed(seed + 10 + k)
        ex = make_examples(generate_scenes(n // 4, generator=g), g, torch.full((n // 4,), k))
        r = _judge_all(model, ex.images, ex.masks)
        clean_p[name] = r["clean"]
        metrics["kinds"][name] = {
            "clean_rate": float((r["clean"] >= 0.5).float().mean()),
            "present_rate": float((r["present"] >= 0.5).float().mean()),
        }
    good = torch.cat([clean_p[k] for k in ("clean", "empty", "removed")])
    bad = torch.cat([clean_p[k] for k in KINDS if k not in ("clean", "empty", "removed")])
    metrics["auroc_train_kinds"] = auroc(good, bad)
    metrics["auroc_held_out"] = auroc(clean_p["clean"], torch.cat([clean_p[k] for k in HELD_OUT_KINDS]))
    return write_json(metrics, out)


def export_oracle(checkpoint: Path, metrics: dict, path: Path | None = None) -> Path:
    """Ship the EMA weights (with the raw model's BatchNorm statistics) of a checkpoint as
    ``weights/oracle.safetensors`` (with its metrics)."""
    return export_checkpoint(checkpoint, "oracle", ORACLE_CONFIG, metrics, path)


def load_oracle(device: str | torch.device = "cpu") -> Oracle:
    """The shipped oracle, eval mode, frozen."""
    return load_shipped("oracle", build_oracle, device)
