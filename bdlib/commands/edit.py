"""``python -m bdlib edit``: blended diffusion (or Algorithm 1) on an image file, from the command line.

``--out OUT.png`` receives the best-ranked result at the input's size. The other ranked samples go next
to it as ``OUT_rank2.png``, ``OUT_rank3.png``, ... and a side-by-side figure (input, mask, results) as
``OUT_figure.png``. Everything is checked before anything is written.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bdlib import distributed
from bdlib.applications import removal_input, removal_start_index
from bdlib.edit import resolve_edit_settings
from bdlib.imageio import save_image
from bdlib.viz import save_figure, show_grid
from bdlib.worlds.base import load_world


def register(subparsers) -> None:
    parser = subparsers.add_parser("edit", help="edit the masked region of an image to match a text prompt")
    parser.add_argument("--world", choices=("toy", "paper"), default="toy")
    parser.add_argument("--image", required=True, help="input image file")
    parser.add_argument("--mask", required=True, help="mask file: white = edit (thresholded at half range)")
    parser.add_argument("--prompt", required=True,
                        help='what the region should show; "" removes what the mask covers (the removal recipe: a '
                             "smooth fill from the border, then blended diffusion from a low k)")  # fmt: skip
    parser.add_argument("--out", required=True, type=Path, help="where to write the best result (.png)")
    parser.add_argument("--k", type=int, default=None, help="start index k (respaced; default: the world's)")
    parser.add_argument("--lam", type=float, default=None, help="λ, background-loss weight (Algorithm 1)")
    parser.add_argument("--aug", type=int, default=None, help="number of CLIP views (1 = no augmentation)")
    parser.add_argument("--steps", default=None, help='respacing of the diffusion, e.g. "100" (default: the world\'s)')
    parser.add_argument("--scale", type=float, default=None, help="CLIP guidance scale")
    parser.add_argument("--ddim", action="store_true", help="DDIM steps instead of DDPM")
    parser.add_argument("--local", action="store_true", help="Algorithm 1 (local CLIP guidance) instead of 2")
    parser.add_argument("--noise-aware", action="store_true", help="guide with the noise-aware CLIP (toy world)")
    parser.add_argument("--official", action="store_true", help="the official code's choices instead of the paper's")
    parser.add_argument("--samples", type=int, default=1, help="samples to draw and rank (default 1)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="samples per network batch (default: all of a process's samples at once); sample i is "
                             "the same whatever the batches, up to float rounding")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--invert-mask", action="store_true", help="edit what the mask leaves black")
    parser.add_argument("--dilate", type=int, default=0, help="grow the mask by this many pixels")
    parser.add_argument("--no-fill", action="store_true",
                        help='with --prompt "": the paper\'s plain recipe (no fill: the prior alone, default k)')
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cache-dir", default=None, help="paper world: where the checkpoints are")
    parser.add_argument("--random-weights", action="store_true",
                        help="paper world: the exact networks with RANDOM weights, no download (tries the pipeline "
                             "and its timing; the pictures are noise)")  # fmt: skip
    parser.set_defaults(func=run)


def _overrides(args: argparse.Namespace) -> dict:
    chosen = {
        "start_index": args.k,
        "lam": args.lam,
        "augmentations": args.aug,
        "respacing": args.steps,
        "guidance_scale": args.scale,
    }
    out = {name: value for name, value in chosen.items() if value is not None}
    if args.steps is not None and args.k is None:
        raise ValueError("--steps changes the schedule, so give --k too (the start index in the new schedule)")
    out.update(ddim=args.ddim, official=args.official, noise_aware=args.noise_aware)
    out["algorithm"] = "local" if args.local else "blended"
    return out


def run(args: argparse.Namespace) -> int:
    if args.out.suffix.lower() != ".png":
        raise ValueError(f"--out must name a .png file, got {args.out}")
    overrides = _overrides(args)
    context = distributed.init(args.device)
    try:
        return _run(args, overrides, context)
    finally:
        distributed.close(context)


def _run(args: argparse.Namespace, overrides: dict, context: distributed.Context) -> int:
    kwargs = {"device": context.device(args.device)}
    if args.random_weights and args.world != "paper":
        raise ValueError("--random-weights is for --world paper (the toy world ships its trained weights)")
    if args.world == "paper":
        kwargs.update(cache_dir=args.cache_dir, random_weights=args.random_weights)
    world = load_world(args.world, **kwargs)
    label = ""
    if "random_weights" in world.capabilities:
        label = "RANDOM WEIGHTS: a pipeline and timing check, not an edit"
        if context.is_main:
            print(f"{label} (python -m bdlib download paper fetches the real checkpoints)", file=sys.stderr)
    start = time.time()
    from tqdm import tqdm

    removing = not args.prompt.strip() and not args.no_fill
    if removing and "start_index" not in overrides:
        overrides["start_index"] = removal_start_index(world, overrides.get("respacing"))
    settings = resolve_edit_settings(world, **overrides)
    image = removal_input(args.image, args.mask, args.invert_mask, args.dilate) if removing else args.image
    # one batch per rank: the bar follows rank 0's steps (and is shown by rank 0 only)
    with tqdm(total=settings.start_index + 1, desc="editing", unit="step", disable=not context.is_main) as bar:

        def progress(_record: dict) -> None:
            bar.update(1)

        result = distributed.sharded_edit(
            context, world, image, args.mask, args.prompt, samples=args.samples, seed=args.seed, settings=settings,
            batch_size=args.batch_size, invert_mask=args.invert_mask, dilate=args.dilate, callback=progress,
        )  # fmt: skip
    if result is None:  # another rank than 0: rank 0 writes
        return 0
    seconds = time.time() - start
    save_image(result.images[0], args.out)
    written = [args.out]
    for rank in range(1, len(result.images)):
        written.append(save_image(result.images[rank], args.out.with_name(f"{args.out.stem}_rank{rank + 1}.png")))
    if args.prompt.strip():
        titles = ["input", "mask"] + [f"#{i + 1} d={d:.3f}" for i, d in enumerate(result.distances.tolist())]
    else:  # nothing to rank by: the samples in the order drawn
        titles = ["input", "mask"] + [f"sample {int(i) + 1}" for i in result.order]
    fig = show_grid(
        [[result.image, result.mask, *result.images]], titles=[titles], panel_inches=1.4, max_width_inches=8.4,
        suptitle=(f'"{args.prompt}"' if args.prompt.strip() else "removal (no prompt)") + (label and f"\n{label}"),
    )  # fmt: skip
    written.append(save_figure(fig, args.out.with_name(f"{args.out.stem}_figure.png")))
    processes = f" in {context.size} processes" if context.distributed else ""
    print(f"edited in {seconds:.2f} s{processes}; wrote " + ", ".join(str(p) for p in written))
    return 0
