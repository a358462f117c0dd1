"""``python -m bdlib edit``: blended diffusion (or Algorithm 1) on an image file, from the command line.

``--out OUT.png`` receives the best-ranked result at the input's size. The other ranked samples go next
to it as ``OUT_rank2.png``, ``OUT_rank3.png``, ... and a side-by-side figure (input, mask, the best results)
as ``OUT_figure.png``. Everything is checked before the work starts: the arguments, the inputs, the prompt,
the memory, and that the outputs can be written and replace no input. The outputs are then written
atomically (:mod:`bdlib.runtime.files`): all of them or none, never half a file.

Each result carries a PNG text entry ``bdlib-edit`` (JSON: the output name, the rank, the prompt, the seed). Once
the new results are in place, ``OUT_rankN.png`` files beyond them that an earlier run wrote are removed: only
regular files whose entry says bdlib wrote them as that rank of that output. A user's own file with such a name,
a symbolic link, or an input is never removed. (Text inside the file, rather than a list of written files kept
beside them, because it travels with the file, needs no extra file in the user's folder, cannot go stale, and
tells the user later which prompt and seed made the picture.)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

from bdlib.applications import default_removal_k, removal_input
from bdlib.commands import arguments
from bdlib.core.settings import MethodSettings, check_weight
from bdlib.course.viz import figure_writer, show_grid
from bdlib.edit import check_settings, guides, prepare_inputs, resolve_edit_settings, settings_without_effect
from bdlib.runtime import distributed
from bdlib.runtime.files import (
    OutputError,
    check_name_length,
    check_writable,
    refuse_overwriting,
    same_file,
    write_files,
)
from bdlib.runtime.imageio import exif_orientation, image_writer, png_text
from bdlib.worlds import check_prompt, load_world

FIGURE_RESULTS = 8  # the figure shows at most this many results (the best ones); every result gets its own file
PROVENANCE_KEY = "bdlib-edit"  # the PNG text entry that marks a result as written by this command


def register(subparsers) -> None:
    parser = subparsers.add_parser("edit", help="edit the masked region of an image to match a text prompt")
    parser.add_argument("--world", choices=("toy", "paper"), default="toy")
    parser.add_argument(
        "--image",
        required=True,
        type=Path,
        help="input image file (read as viewers show it: a photo's EXIF orientation is applied)",
    )
    parser.add_argument(
        "--mask",
        required=True,
        type=Path,
        help="mask file: white = edit (thresholded at half range; EXIF orientation applied)",
    )
    parser.add_argument(
        "--prompt",
        required=True,
        help='what the region should show; "" removes what the mask covers (the removal recipe: a '
        "smooth fill from the border, then blended diffusion from a low k)",
    )
    parser.add_argument("--out", required=True, type=Path, help="where to write the best result (.png)")
    parser.add_argument(
        "--k", type=arguments.non_negative_int, default=None, help="start index k (respaced; default: the world's)"
    )
    parser.add_argument(
        "--lam", type=arguments.finite_float, default=None, help="λ, background-loss weight (Algorithm 1)"
    )
    parser.add_argument(
        "--views", type=arguments.positive_int, default=None, help="number of CLIP views (1 = no augmentation)"
    )
    parser.add_argument(
        "--respacing", default=None, help='respacing of the diffusion, e.g. "100" (default: the world\'s)'
    )
    parser.add_argument("--guidance-scale", type=arguments.finite_float, default=None, help="CLIP guidance scale s")
    parser.add_argument("--ddim", action="store_true", help="DDIM steps instead of DDPM")
    parser.add_argument(
        "--algorithm",
        choices=("blended", "local"),
        default="blended",
        help="blended: Algorithm 2 (the default); local: Algorithm 1, local CLIP guidance",
    )
    parser.add_argument("--noise-aware", action="store_true", help="guide with the noise-aware CLIP (toy world)")
    parser.add_argument("--official", action="store_true", help="the official code's choices instead of the paper's")
    parser.add_argument(
        "--deterministic",
        action="store_true",
        help="deterministic kernels (a GPU then gives the same bits twice; slower)",
    )
    parser.add_argument(
        "--samples", type=arguments.positive_int, default=1, help="samples to draw and rank (default 1)"
    )
    parser.add_argument(
        "--batch-size",
        type=arguments.positive_int,
        default=None,
        help="draw the samples this many at a time (default: all at once; the samples do not depend "
        "on it, only the memory an edit needs)",
    )
    parser.add_argument("--seed", type=arguments.seed, default=0, help="an integer in [0, 2**63) (default 0)")
    parser.add_argument("--invert-mask", action="store_true", help="edit what the mask leaves black")
    parser.add_argument(
        "--dilate", type=arguments.non_negative_int, default=0, help="grow the mask by this many pixels"
    )
    parser.add_argument(
        "--no-fill",
        action="store_true",
        help='with --prompt "": the paper\'s plain recipe (no fill: the prior alone, default k)',
    )
    parser.add_argument("--device", type=arguments.device, default="cpu")
    parser.add_argument("--cache-dir", default=None, help="paper world: where the checkpoints are")
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="paper world: the exact networks with RANDOM weights, no download (tries the pipeline "
        "and its timing; the pictures are noise)",
    )
    parser.set_defaults(func=run)


def _flag(name: str, value: object = True) -> str:
    """A setting as the command line spells it: ``lam`` → ``--lam``; ``algorithm, local`` → ``--algorithm local``."""
    flag = "--" + name.replace("_", "-")
    return flag if value is True else f"{flag} {value}"


def check_options(args: argparse.Namespace) -> None:
    """Refuse, before anything loads, an option that the chosen world, algorithm or prompt ignores or cannot do."""
    paper_only = "only the paper world reads it (the toy world ships its trained weights with bdlib)"
    empty = '--prompt ""'
    no_effect, impossible = "has no effect here", "cannot be used here"
    rules = [
        (args.cache_dir is not None, "--cache-dir", args.world != "paper", no_effect, paper_only, "add --world paper"),
        (args.random_weights, "--random-weights", args.world != "paper", no_effect, paper_only, "add --world paper"),
        (
            args.noise_aware,
            "--noise-aware",
            args.world != "toy",
            impossible,
            "only the toy world has a noise-aware CLIP (the paper guides with CLIP ViT-B/16)",
            "use --world toy",
        ),
        (
            args.no_fill,
            "--no-fill",
            guides(args.prompt),
            no_effect,
            f"it changes the removal recipe, which only the empty prompt ({empty}) runs",
            f"give {empty}",
        ),
        (args.no_fill, "--no-fill", args.official, no_effect, "the official code has no fill step", "drop --official"),
    ]
    for given, flag, refused, verdict, why, instead in rules:
        if given and refused:
            raise ValueError(f"{flag} {verdict}: {why}; drop {flag}, or {instead}")
    names = ("lam", "guidance_scale", "views", "noise_aware")
    given = [name for name in names if getattr(args, name) not in (None, False)]
    for name, why, other in settings_without_effect(given, args.algorithm, guides(args.prompt, args.official)):
        instead = f", or add {_flag(*other)}" if other else ""
        raise ValueError(f"{_flag(name)} has no effect here: {why}; drop {_flag(name)}{instead}")
    MethodSettings(algorithm=args.algorithm, noise_aware=args.noise_aware, official=args.official)  # conflicts


def _overrides(args: argparse.Namespace) -> dict:
    for flag, value in (("--guidance-scale", args.guidance_scale), ("--lam", args.lam)):
        if value is not None:
            check_weight(flag, value)
    chosen = {
        "k": args.k,
        "lam": args.lam,
        "views": args.views,
        "respacing": args.respacing,
        "guidance_scale": args.guidance_scale,
    }
    out = {name: value for name, value in chosen.items() if value is not None}
    if args.respacing is not None and args.k is None:
        raise ValueError("--respacing changes the schedule, so give --k too (the start index in the new schedule)")
    out.update(ddim=args.ddim, official=args.official, noise_aware=args.noise_aware, deterministic=args.deterministic)
    out["algorithm"] = args.algorithm
    return out


def output_paths(out: Path, samples: int) -> list[Path]:
    """Every file an edit of ``samples`` writes: ``OUT.png``, ``OUT_rank2.png``, ..., ``OUT_figure.png``."""
    ranks = [out.with_name(f"{out.stem}_rank{rank}.png") for rank in range(2, samples + 1)]
    return [out, *ranks, out.with_name(f"{out.stem}_figure.png")]


def provenance(out: Path, rank: int, args: argparse.Namespace) -> dict[str, str]:
    """The PNG text of result ``rank`` (1 = ``OUT.png``): which output and rank bdlib wrote it as, and how."""
    entry = {"out": out.name, "rank": rank, "prompt": args.prompt, "seed": args.seed, "world": args.world}
    return {PROVENANCE_KEY: json.dumps(entry, ensure_ascii=False)}


def written_by_bdlib(path: Path, out: Path, rank: int) -> bool:
    """True only for a regular file (not a link) whose PNG text says bdlib wrote it as result ``rank`` of ``out``."""
    if path.is_symlink() or not path.is_file():
        return False
    try:
        entry = json.loads(png_text(path).get(PROVENANCE_KEY, "null"))
    except json.JSONDecodeError:
        return False
    return isinstance(entry, dict) and entry.get("out") == out.name and entry.get("rank") == rank


def stale_rank_files(out: Path, samples: int) -> list[Path]:
    """``OUT_rankN.png`` files with ``N > samples`` that bdlib wrote (:func:`written_by_bdlib`): the results of an
    earlier run with more samples. Other files with such names are not listed."""
    pattern = re.compile(re.escape(out.stem) + r"_rank(\d+)\.png")
    if not out.parent.is_dir():
        return []
    return sorted(
        path
        for path in out.parent.iterdir()
        if (match := pattern.fullmatch(path.name))
        and int(match.group(1)) > samples
        and written_by_bdlib(path, out, int(match.group(1)))
    )


def check_outputs(args: argparse.Namespace) -> list[Path]:
    """Check, before any work, that every output can be written and replaces no input; return the outputs."""
    if args.out.suffix.lower() != ".png":
        raise ValueError(f"--out must name a .png file, got {args.out}")
    outputs = output_paths(args.out, args.samples)
    refuse_overwriting(outputs, {"--image": args.image, "--mask": args.mask})
    for path in outputs:
        if path.is_dir():
            raise OutputError(f"the output {path} is a folder: choose another --out")
    longest = max(outputs, key=lambda path: len(os.fsencode(path.name)))  # a rank's or the figure's name
    check_name_length(longest, "output (named after --out)")
    check_writable(args.out, "output")  # the others go to the same folder
    return outputs


def _figure(result, prompt: str, label: str):
    shown = min(len(result.images), FIGURE_RESULTS)
    if prompt.strip():
        titles = [f"#{i + 1} d={d:.3f}" for i, d in enumerate(result.distances[:shown].tolist())]
    else:  # nothing to rank by: the samples in the order drawn
        titles = [f"sample {int(i) + 1}" for i in result.order[:shown]]
    more = f" (best {shown} of {len(result.images)})" if shown < len(result.images) else ""
    suptitle = (f'"{prompt}"' if prompt.strip() else "removal (no prompt)") + more + (label and f"\n{label}")
    return show_grid(
        [[result.image, result.mask, *result.images[:shown]]],
        titles=[["input", "mask", *titles]],
        panel_inches=1.4,
        max_width_inches=8.4,
        suptitle=suptitle,
    )


def _note_orientation(args: argparse.Namespace) -> None:
    """Say when an input is stored turned or mirrored: bdlib reads it as viewers show it, and writes it that way."""
    for flag, path in (("--image", args.image), ("--mask", args.mask)):
        if (orientation := exif_orientation(path)) != 1:
            print(
                f"note: {flag} {path} is stored turned or mirrored (EXIF orientation {orientation}): read as viewers "
                "show it, and the results are written that way",
                file=sys.stderr,
            )


def run(args: argparse.Namespace) -> int:
    """Check everything that is the same on every rank (the options, outputs, prompt, inputs and k) before joining
    torchrun's group, so that a bad input stops every rank at once with one message (rank 0's); then edit."""
    check_options(args)
    outputs = check_outputs(args)
    overrides = _overrides(args)
    check_prompt(args.world, args.prompt)
    image, mask = prepare_inputs(args.image, args.mask, args.invert_mask, args.dilate, official=args.official)
    context = distributed.from_environment()
    kwargs = {"device": context.device(args.device)}
    if args.world == "paper":
        kwargs.update(cache_dir=args.cache_dir, random_weights=args.random_weights)
    world = load_world(args.world, **kwargs)
    removing = not guides(args.prompt) and not args.no_fill and not args.official  # the official code has no fill
    if removing and "k" not in overrides:
        overrides["k"] = default_removal_k(world, overrides.get("respacing"))
    settings = resolve_edit_settings(world, **overrides)
    check_settings(world, settings, "--k ")
    if context.is_main:
        _note_orientation(args)
    context = distributed.init(args.device)
    try:
        return _run(args, world, settings, removal_input(image, mask) if removing else image, mask, outputs, context)
    finally:
        distributed.close(context)


def _run(args: argparse.Namespace, world, settings, image, mask, outputs: list[Path], context) -> int:
    label = ""
    if "random_weights" in world.capabilities:
        label = "RANDOM WEIGHTS:\nnot an edit"  # in the figure, where space is short
        if context.is_main:
            print(
                "RANDOM WEIGHTS: a pipeline and timing check, not an edit (python -m bdlib download paper fetches "
                "the real checkpoints)",
                file=sys.stderr,
            )
    start = time.time()
    from tqdm import tqdm

    size = args.batch_size or -(-args.samples // context.size)  # default: one batch per process
    batches = len(context.shard(distributed.batches(args.samples, size)))
    bars = []  # rank 0's bar, started with the first step so that every refusal comes before it

    def progress(_record: dict) -> None:
        if not context.is_main:
            return
        if not bars:
            bars.append(tqdm(total=(settings.k + 1) * batches, desc="editing", unit="step"))
        bars[0].update(1)

    try:
        result = distributed.sharded_edit(
            context,
            world,
            image,
            mask,
            args.prompt,
            samples=args.samples,
            seed=args.seed,
            settings=settings,
            batch_size=args.batch_size,
            callback=progress,
        )  # the mask as read: inverted and dilated already
    finally:
        for bar in bars:
            bar.close()
    if result is None:  # a rank other than 0: rank 0 writes
        return 0
    seconds = time.time() - start
    ranked = enumerate(zip(outputs[:-1], result.images, strict=True), start=1)
    writers = {path: image_writer(image, provenance(args.out, rank, args)) for rank, (path, image) in ranked}
    fig = _figure(result, args.prompt, label)
    try:
        writers[outputs[-1]] = figure_writer(fig)
        written = write_files(writers)
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
    inputs = (args.image, args.mask)
    for stale in stale_rank_files(args.out, args.samples):
        if not any(same_file(stale, source) for source in inputs):
            stale.unlink()
    processes = f" in {context.size} processes" if context.distributed else ""
    print(f"edited in {seconds:.2f} s{processes}; wrote " + ", ".join(str(p) for p in written))
    return 0
