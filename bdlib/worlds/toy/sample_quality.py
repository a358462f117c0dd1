"""How good are the toy DDPM's samples? Find the objects in each sample and let the oracle judge them.

1. **Find** candidate objects: toy backgrounds are muted (chroma ≤ ~0.4, brightness ≤ ~0.85 in [0, 1])
   and toy objects are vivid (chroma ≥ 0.55) or white (every channel ≥ 0.98). Pixels with chroma
   ``max(rgb) - min(rgb) > 0.45`` or ``min(rgb) > 0.9`` are grouped into 4-connected components;
   components of at least ``min_pixels`` pixels are candidates. The same finder runs on real scenes,
   so its own misses count the same on both sides of the comparison.
2. **Judge** each candidate's box (grown by 2 px) with the oracle: present? clean? colour and shape?
3. **Compare** with real scenes put through the same pipeline: the share of found objects that are
   clean and of a known colour and shape, and the colour and shape frequencies (in points).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bdlib.core.sampling import sample
from bdlib.worlds.toy.ddpm import toy_diffusion
from bdlib.worlds.toy.scenes import generate_scenes
from bdlib.worlds.toy.vocab import COLORS, SHAPES


def vivid_pixels(images: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) bool: pixels that look like an object, not like the muted background."""
    rgb = (images.clamp(-1, 1) + 1) / 2  # (B, 3, H, W) in [0, 1]
    chroma = rgb.amax(dim=1, keepdim=True) - rgb.amin(dim=1, keepdim=True)
    return (chroma > 0.45) | (rgb.amin(dim=1, keepdim=True) > 0.9)


def connected_components(mask: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) bool → (B, H, W) long labels (0 = background), by propagating the largest pixel id
    through 4-neighbours until nothing changes."""
    batch, _, height, width = mask.shape
    ids = torch.arange(1, height * width + 1, dtype=torch.float32).view(1, 1, height, width).expand(batch, 1, -1, -1)
    labels = torch.where(mask, ids, torch.zeros_like(ids))
    cross = torch.tensor([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=torch.bool)
    while True:
        padded = F.pad(labels, (1, 1, 1, 1))
        neighbours = torch.stack(
            [
                padded[..., 1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
                for dy in (-1, 0, 1)
                for dx in (-1, 0, 1)
                if cross[dy + 1, dx + 1]
            ]
        )
        grown = torch.where(mask, neighbours.amax(dim=0), torch.zeros_like(labels))
        if torch.equal(grown, labels):
            return labels[:, 0].long()
        labels = grown


def find_objects(images: torch.Tensor, min_pixels: int = 6, grow: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidate object regions: ``(masks (K, 1, H, W) of boxes grown by ``grow`` px, image index (K,))``."""
    labels = connected_components(vivid_pixels(images))
    height, width = images.shape[-2:]
    masks, owners = [], []
    for b in range(images.shape[0]):
        values, counts = labels[b].unique(return_counts=True)
        for value, count in zip(values.tolist(), counts.tolist(), strict=True):
            if value == 0 or count < min_pixels:
                continue
            ys, xs = torch.nonzero(labels[b] == value, as_tuple=True)
            box = torch.zeros(1, height, width)
            box[
                :,
                max(0, int(ys.min()) - grow) : int(ys.max()) + grow + 1,
                max(0, int(xs.min()) - grow) : int(xs.max()) + grow + 1,
            ] = 1
            masks.append(box)
            owners.append(b)
    if not masks:
        return torch.zeros(0, 1, height, width), torch.zeros(0, dtype=torch.long)
    return torch.stack(masks), torch.tensor(owners)


@torch.no_grad()
def judge_objects(oracle, images: torch.Tensor, chunk: int = 512) -> dict:
    """Find and judge every object in ``images``; return counts and frequencies (colour and shape, in %)."""
    masks, owners = find_objects(images)
    verdicts = [oracle.judge(images[owners[i : i + chunk]], masks[i : i + chunk]) for i in range(0, len(owners), chunk)]
    present = torch.cat([v["present"] for v in verdicts]) >= 0.5 if verdicts else torch.zeros(0, dtype=torch.bool)
    clean = torch.cat([v["clean"] for v in verdicts]) >= 0.5 if verdicts else torch.zeros(0, dtype=torch.bool)
    color = torch.cat([v["color"] for v in verdicts]) if verdicts else torch.zeros(0, dtype=torch.long)
    shape = torch.cat([v["shape"] for v in verdicts]) if verdicts else torch.zeros(0, dtype=torch.long)
    found = int(present.sum())
    good = present & clean & (color >= 0) & (shape >= 0)
    return {
        "images": images.shape[0],
        "candidates": len(owners),
        "objects_found": found,
        "objects_per_image": round(found / max(1, images.shape[0]), 3),
        "clean_known_fraction": round(float(good.sum()) / max(1, found), 4),
        "color_freq": {
            c: round(100 * float((color[present] == i).float().mean()), 2) if found else 0.0
            for i, c in enumerate(COLORS)
        },
        "shape_freq": {
            s: round(100 * float((shape[present] == i).float().mean()), 2) if found else 0.0
            for i, s in enumerate(SHAPES)
        },
    }


def evaluate_toy_ddpm(
    model, n: int = 512, seed: int = 123, respacing: str = "100", batch_size: int = 128, oracle=None
) -> dict:
    """Sample ``n`` scenes and compare them with ``n`` real scenes through the find-and-judge pipeline.

    Sampling clips x̂_0 to [-1, 1] at every step, as guided-diffusion's sampling script does by default.
    """
    if oracle is None:
        from bdlib.worlds.toy.oracle import load_oracle

        oracle = load_oracle()
    diffusion = toy_diffusion(respacing)
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    samples = torch.cat(
        [
            sample(
                model,
                diffusion,
                (min(batch_size, n - i), 3, 32, 32),
                generator=generator,
                device=device,
                clip_denoised=True,
            ).cpu()
            for i in range(0, n, batch_size)
        ]
    )
    generated = judge_objects(oracle, samples.clamp(-1, 1))
    real = judge_objects(oracle, generate_scenes(n, seed=seed).images)
    gaps = [abs(generated["color_freq"][c] - real["color_freq"][c]) for c in COLORS]
    gaps += [abs(generated["shape_freq"][s] - real["shape_freq"][s]) for s in SHAPES]
    return {
        "n": n,
        "seed": seed,
        "respacing": respacing,
        "generated": generated,
        "real": real,
        "max_frequency_gap_points": round(max(gaps), 2),
    }
