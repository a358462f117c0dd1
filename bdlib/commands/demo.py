"""``python -m bdlib demo``: forward noising of a toy scene and a short reverse chain, as one figure."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from bdlib.commands import arguments
from bdlib.core.sampling import sample_progressive
from bdlib.course.viz import check_figure_path, save_figure, show_grid
from bdlib.runtime.files import check_writable
from bdlib.runtime.randomness import seeded_construction
from bdlib.worlds.toy.ddpm import build_toy_ddpm, toy_diffusion
from bdlib.worlds.toy.tasks import example_task
from bdlib.worlds.toy.weights_io import load_weights, weights_path

NOISE_LEVELS = (0, 50, 100, 200, 400, 600, 800, 999)


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="draw forward noising and a reverse chain (CPU, seconds)")
    parser.add_argument("--out", type=Path, default=Path("figures/demo.png"), help="where to write the figure")
    parser.add_argument("--steps", type=arguments.positive_int, default=50, help="respaced reverse steps (default 50)")
    parser.add_argument("--seed", type=arguments.seed, default=0, help="an integer in [0, 2**63) (default 0)")
    parser.set_defaults(func=run)


def _toy_ddpm() -> tuple[torch.nn.Module, str]:
    """The shipped toy DDPM, or a randomly initialised one (clearly labelled) if it is not installed."""
    with seeded_construction():
        model = build_toy_ddpm()
    path = weights_path("toy_ddpm")
    if path.exists():
        state, _ = load_weights(path, "python -m bdlib train toy-ddpm")
        model.load_state_dict(state)
        label = "trained toy DDPM"
    else:
        label = "toy DDPM with RANDOM weights (train it: python -m bdlib train toy-ddpm --export)"
    return model.eval().requires_grad_(False), label


def run(args: argparse.Namespace) -> int:
    check_figure_path(check_writable(args.out, "figure", example="demo.png"))
    if args.steps > 1000:
        raise ValueError(f"--steps must be at most 1000 (the toy DDPM's chain), got {args.steps}")
    start = time.time()
    image = example_task().image[None]  # (1, 3, 32, 32)
    full = toy_diffusion(respacing=None)
    gen = torch.Generator().manual_seed(args.seed)
    noise = torch.randn(image.shape, generator=gen)
    forward = [full.q_sample(image, torch.tensor([t]), noise) for t in NOISE_LEVELS]

    model, label = _toy_ddpm()
    diffusion = toy_diffusion(respacing=str(args.steps))
    records = list(sample_progressive(model, diffusion, (1, 3, 32, 32), generator=gen, clip_denoised=True))
    picks = [round(i * (len(records) - 1) / (len(NOISE_LEVELS) - 2)) for i in range(len(NOISE_LEVELS) - 1)]
    chain = [records[i].x_t for i in picks] + [records[-1].x_prev]
    chain_titles = [f"x_t, t={records[i].timestep}" for i in picks] + ["x_0"]
    pred = [records[i].pred_x0 for i in picks] + [records[-1].x_prev]
    pred_titles = [f"x̂_0 at t={records[i].timestep}" for i in picks] + ["x_0"]

    fig = show_grid(
        [forward, chain, pred],
        titles=[[f"t={t}" for t in NOISE_LEVELS], chain_titles, pred_titles],
        row_labels=["q(x_t | x_0)", "reverse x_t", "predicted x̂_0"],
        panel_inches=1.3,  # 130 px per 32-px image
        max_width_inches=1.3 * len(NOISE_LEVELS),
        suptitle=f"Forward noising of a toy scene,\nand {args.steps} reverse DDPM steps of the {label}",
    )
    path = save_figure(fig, args.out)
    print(f"wrote {path} in {time.time() - start:.1f} s ({label})")
    return 0
