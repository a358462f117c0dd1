"""Time one CLIP-guided diffusion step of Blended Diffusion's configuration, with random weights.

The timed step is bdlib's own (``bdlib.core.algorithms.blended_step``, or ``bdlib.core.official.blended_step`` with
``--official``: two network passes), built from ``MethodSettings`` by ``bdlib.core.variants`` as an edit builds it,
with the mask, the per-sample CPU draws of the noises and the views and their copies to the device. Its math::

    out  = UNet(x_t, t)                                     # 256x256 ADM, autograd on x_t
    x̂_0 = p_mean_variance(out, x_t, t).pred_x0
    v    = [pool_224(x̂_0), aug_1(pool_224(x̂_0)), ..., aug_7(pool_224(x̂_0))]   # 8 views per image
    L    = λ · Σ_b mean_views D_sph(CLIP(v), text)          # D_sph(a, b) = 2 arcsin(‖â - b̂‖ / 2)²
    g    = -∇_{x_t} L                                       # backward through CLIP and the UNet
    x_{t-1} = μ + Σ g + σ z                                 # guided ancestral step

The weights are random (nothing is downloaded): the cost depends only on the architectures, which are
the exact ones (``paper_unet("100")``, 552.8 M parameters, and ``random_clip("ViT-B/16")``). The
augmentations are bdlib's extending augmentations (kornia homographies of the official affine and
perspective ranges on copies 2..8). FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode``
on the meta device (no memory, no time), once per batch size, on :func:`counted_step`, the same math written
with meta tensors (the element-wise work of the real step is not counted). See ``benchmarks/README.md`` for the
meaning of every JSON field.

Usage::

    python benchmarks/bench_guided_step.py --device cpu --batch 1 --precision fp32 bf16 \
        --repeats 1 --warmup 1 --threads 2 --out benchmarks/results/guided_step_cpu.json
    python benchmarks/bench_guided_step.py --smoke --out /tmp/smoke.json      # seconds, tiny models
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_common, also when imported by path
from bench_common import current_rss_mb, device_name, peak_rss_mb, synchronize  # noqa: E402

from bdlib.core.augment import ExtendingAugmentations
from bdlib.core.diffusion import Diffusion, create_diffusion
from bdlib.core.losses import spherical_distance
from bdlib.nets.clip_adapter import ClipModel, normalize01, random_clip
from bdlib.nets.unet import PAPER_UNET_CONFIG, UNetModel
from bdlib.runtime.precision import PRECISIONS, low_precision_dtypes, network_autocast
from bdlib.runtime.randomness import seeded_construction

NUM_VIEWS = 8  # the official aug_num: 1 clean view + 7 augmented views
CLIP_LAMBDA = 1000.0  # the official clip_guidance_lambda
T_INDEX = 74  # first respaced step of a blended edit with skip_timesteps 25 (original t = 747)
RESPACING = "100"

# Smoke world: the paper's UNet layout at width 32 and 64x64, and a two-layer CLIP at 32x32.
SMOKE_UNET_CONFIG: dict[str, Any] = {**PAPER_UNET_CONFIG, "image_size": 64, "model_channels": 32}
SMOKE_CLIP_CONFIG: dict[str, int] = dict(
    embed_dim=32,
    image_resolution=32,
    vision_layers=2,
    vision_width=64,
    vision_patch_size=16,
    context_length=77,
    vocab_size=512,
    transformer_width=64,
    transformer_heads=1,
    transformer_layers=1,
)


@dataclass
class World:
    """The models of one benchmark configuration."""

    name: str  # "paper" or "smoke"
    model: UNetModel
    diffusion: Diffusion
    clip: ClipModel
    image_size: int


def build_world(smoke: bool, image_size: int, device: str, seed: int = 0) -> World:
    """The paper's UNet and CLIP ViT-B/16 (or the smoke stand-ins), random weights, frozen, eval mode.

    ``device="meta"`` builds the architectures without allocating anything (for FLOP counting).
    """
    unet_config = SMOKE_UNET_CONFIG if smoke else PAPER_UNET_CONFIG
    with seeded_construction(seed), torch.device(device):
        model = UNetModel(**unet_config)
    model.requires_grad_(False).eval()
    diffusion = create_diffusion(steps=1000, schedule="linear", respacing=RESPACING, learn_sigma=True)
    clip_config = SMOKE_CLIP_CONFIG if smoke else "ViT-B/16"
    if device == "meta":
        with torch.device("meta"):
            clip = random_clip(clip_config, seed=seed)
    else:
        clip = random_clip(clip_config, seed=seed).to(device)
    return World("smoke" if smoke else "paper", model, diffusion, clip, image_size)


def clip_views(pred_x0: torch.Tensor, size: int, augment: ExtendingAugmentations | None) -> torch.Tensor:
    """``NUM_VIEWS`` normalised CLIP inputs per image, view-major: row ``v * B + b``.  # (V*B, 3, S, S)

    ``augment=None`` repeats the clean view (same shapes and FLOPs; used on the meta device, where the
    random augmentation parameters cannot be drawn).
    """
    small = F.adaptive_avg_pool2d((pred_x0 + 1) / 2, size)  # (B, 3, S, S) in [0, 1]
    views = small.repeat(NUM_VIEWS, 1, 1, 1) if augment is None else augment(small, torch.Generator().manual_seed(0))
    return normalize01(views)


def counted_step(
    world: World,
    x_t: torch.Tensor,
    t: torch.Tensor,
    text_emb: torch.Tensor,
    noise: torch.Tensor,
    augment: ExtendingAugmentations | None,
    precision: str,
) -> torch.Tensor:
    """One CLIP-guided DDPM step ``x_{t-1} = μ + Σ·g + σz`` with ``g = -∇_{x_t} L``.  # (B, 3, H, W)

    The gradient comes from ``loss.backward()`` on a leaf copy of ``x_t`` (every weight is frozen, so
    only input gradients are computed; ``FlopCounterMode`` does not support ``torch.autograd.grad``).
    """
    x = x_t.detach().requires_grad_(True)  # (B, 3, H, W)
    with network_autocast(x.device, precision):
        out = world.model(x, world.diffusion.model_timesteps(t))  # (B, 6, H, W), float32
    mv = world.diffusion.p_mean_variance(out.float(), x, t)
    views = clip_views(mv.pred_x0, world.clip.input_resolution, augment)  # (V*B, 3, S, S), float32
    with network_autocast(x.device, precision, "guidance"):
        image_emb = world.clip.encode_pixels(views)  # (V*B, D), float32
    dist = spherical_distance(image_emb, text_emb).view(NUM_VIEWS, x.shape[0]).mean(dim=0)  # (B,)
    loss = CLIP_LAMBDA * dist.sum()
    loss.backward()
    with torch.no_grad():
        grad = -x.grad  # (B, 3, H, W)
        return world.diffusion.ddpm_step(mv, t, noise, grad=grad).detach()


def step_inputs(world: World, batch: int, device: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random x_t, the timestep index, a random text embedding and the step noise, on ``device``."""
    gen = torch.Generator().manual_seed(seed)
    size = world.image_size
    dim = world.clip.embed_dim
    return {
        "x_t": torch.randn(batch, 3, size, size, generator=gen).to(device),
        "t": torch.full((batch,), T_INDEX, dtype=torch.long).to(device),
        "text_emb": torch.randn(1, dim, generator=gen).to(device),
        "noise": torch.randn(batch, 3, size, size, generator=gen).to(device),
    }


def count_flops(meta_world: World, batch: int) -> tuple[float, float]:
    """FLOPs of one UNet forward per image (at batch 1) and of one whole step at ``batch``.

    Counted on the meta device: matmuls, convolutions and attention (with their backward ops) as
    ``FlopCounterMode`` sees them (2 FLOPs per multiply-add); element-wise ops are not counted.
    """
    one = step_inputs(meta_world, 1, "cpu")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta_world.model(one["x_t"].to("meta"), meta_world.diffusion.model_timesteps(one["t"]).to("meta"))
    unet_forward = float(counter.get_total_flops())
    inputs = {k: v.to("meta") for k, v in step_inputs(meta_world, batch, "cpu").items()}
    counter = FlopCounterMode(display=False)
    with counter:
        counted_step(meta_world, augment=None, precision="fp32", **inputs)
    return unet_forward, float(counter.get_total_flops())


def bdlib_step(world: World, device: str, batch: int, precision: str, official: bool):
    """bdlib's own guided step for this world, as an edit runs it: a function of no arguments."""
    from bdlib.core import official as official_mode
    from bdlib.core import variants
    from bdlib.core.algorithms import blended_step
    from bdlib.core.settings import MethodSettings
    from bdlib.runtime.randomness import SampleStreams
    from bdlib.worlds.base import World as BdlibWorld

    settings = MethodSettings(respacing=RESPACING, k=T_INDEX, views=NUM_VIEWS, precision=precision, official=official)
    bd_world = BdlibWorld(
        name=world.name,
        unet=world.model,
        clip=world.clip,
        image_size=world.image_size,
        make_diffusion=lambda respacing: world.diffusion,
        defaults=settings,
        check_prompt=lambda prompt: None,
    )
    inputs = step_inputs(world, batch, device)
    size = world.image_size
    x = inputs["x_t"].clamp(-1, 1)  # stands in for the input image
    mask = torch.zeros(1, 1, size, size, device=device)
    mask[..., size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1
    streams = SampleStreams.for_edit(0, range(batch), device)
    parts = variants.parts(bd_world, settings, x, mask, inputs["text_emb"], variants.views_for(settings, streams))
    step = official_mode.blended_step if official else blended_step
    shape = x.shape[1:]

    def one_step() -> torch.Tensor:
        noise, bg_noise = streams.randn(shape), streams.randn(shape)  # per-sample CPU draws, copied to the device
        record = step(
            parts.denoise,
            parts.diffusion,
            inputs["x_t"],
            T_INDEX,
            x=x,
            m=mask,
            loss=parts.loss,
            noise=noise,
            bg_noise=bg_noise,
            **parts.options,
        )
        return record.blend

    return one_step


def time_config(
    world: World, device: str, batch: int, precision: str, repeats: int, warmup: int, official: bool = False
) -> dict[str, Any]:
    """Warm up, then time ``repeats`` of bdlib's steps; seconds are the median. Returns the measured fields."""
    step = bdlib_step(world, device, batch, precision, official)
    cuda = device.startswith("cuda")
    rss_before = current_rss_mb()
    out = None
    for _ in range(warmup):
        out = step()
    synchronize(device)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        out = step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return {
        "seconds_per_step": statistics.median(times),
        "seconds_all": times,
        "peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20 if cuda else peak_rss_mb(),
        "peak_memory_kind": "cuda_max_memory_allocated" if cuda else "process_peak_rss",
        "process_rss_before_mb": rss_before,
        "output_finite": bool(torch.isfinite(out).all()) if out is not None else None,
    }


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every (device, precision, batch) configuration; the JSON file is rewritten after each one."""
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cuda", "cpu"] if args.device == "all" else [args.device]  # the GPU first: it is quick
    if not torch.cuda.is_available():
        if args.device.startswith("cuda"):
            raise SystemExit(f"--device {args.device}: torch.cuda.is_available() is False here; use --device cpu")
        devices = [d for d in devices if not d.startswith("cuda")]
    image_size = args.image_size or (SMOKE_UNET_CONFIG if args.smoke else PAPER_UNET_CONFIG)["image_size"]

    meta_world = build_world(args.smoke, image_size, "meta")
    flops: dict[int, tuple[float, float]] = {b: count_flops(meta_world, b) for b in args.batch}
    unet_params = sum(p.numel() for p in meta_world.model.parameters())
    clip_params = sum(p.numel() for p in meta_world.clip.model.visual.parameters())
    print(
        f"UNet forward: {flops[args.batch[0]][0] / 1e12:.4f} TFLOP per {image_size}x{image_size} image "
        f"({unet_params / 1e6:.1f} M parameters)",
        flush=True,
    )

    records: list[dict[str, Any]] = []
    for device in devices:
        if device.startswith("cuda"):
            # Float32 means true float32: no TF32 in matmuls or convolutions.
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        world = build_world(args.smoke, image_size, device)
        for precision in args.precision:
            if device == "cpu" and torch.float16 in low_precision_dtypes(precision):
                print("skipping fp16 on cpu (CPU autocast is benchmarked in bf16)", flush=True)
                continue
            bf16 = torch.bfloat16 in low_precision_dtypes(precision)
            if device.startswith("cuda") and bf16 and not torch.cuda.is_bf16_supported():
                print("skipping bf16: this GPU does not support it", flush=True)
                continue
            for batch, official in [(b, o) for b in args.batch for o in ([False, True] if args.official else [False])]:
                record = base_record(args, world, device, batch, precision, unet_params, clip_params)
                record["official_two_pass"] = official
                record["unet_forward_tflop_per_image"] = flops[batch][0] / 1e12
                record["step_tflop"] = flops[batch][1] / 1e12 + (official * flops[batch][0] * batch / 1e12)
                try:
                    record.update(time_config(world, device, batch, precision, args.repeats, args.warmup, official))
                    record["achieved_tflops"] = record["step_tflop"] / record["seconds_per_step"]
                except torch.cuda.OutOfMemoryError as err:
                    record.update(
                        seconds_per_step=None,
                        peak_memory_mb=None,
                        achieved_tflops=None,
                        error=f"out of memory: {str(err).splitlines()[0]}",
                    )
                records.append(record)
                print(summary_line(record), flush=True)
                if args.out:
                    write_json(records, args.out)
                gc.collect()
                if device.startswith("cuda"):
                    torch.cuda.empty_cache()
        del world
        gc.collect()
    return records


def base_record(
    args: argparse.Namespace,
    world: World,
    device: str,
    batch: int,
    precision: str,
    unet_params: int,
    clip_params: int,
) -> dict[str, Any]:
    return {
        "world": world.name,
        "device": device,
        "device_name": device_name(device),
        "batch": batch,
        "precision": precision,
        "autocast": bool(low_precision_dtypes(precision)),
        "image_size": world.image_size,
        "clip_input_size": world.clip.input_resolution,
        "views": NUM_VIEWS,
        "timestep_index": T_INDEX,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "unet_params": unet_params,
        "clip_vision_params": clip_params,
        "tf32": (torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32)
        if device.startswith("cuda")
        else None,
        "cudnn_benchmark": torch.backends.cudnn.benchmark if device.startswith("cuda") else None,
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda if device.startswith("cuda") else None,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def summary_line(r: dict[str, Any]) -> str:
    if r.get("error"):
        return f"{r['device']:>4} {r['precision']:>4} batch {r['batch']}: {r['error']}"
    return (
        f"{r['device']:>4} {r['precision']:>4} batch {r['batch']}: {r['seconds_per_step']:.3f} s/step, "
        f"peak {r['peak_memory_mb']:.0f} MiB ({r['peak_memory_kind']}), "
        f"{r['achieved_tflops']:.3f} TFLOP/s counted, finite {r['output_finite']}"
    )


def write_json(records: list[dict[str, Any]], path: str) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(records, indent=2) + "\n")
    tmp.replace(out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="all", help="cpu, cuda, cuda:N, or all (cuda when available, then cpu)")
    parser.add_argument("--official", action="store_true", help="also time the official two-pass step")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4], help="batch sizes (default 1 4)")
    parser.add_argument(
        "--precision",
        nargs="+",
        choices=sorted(PRECISIONS),
        default=["fp32", "bf16", "fp16"],
        help="fp32 (no autocast, TF32 off) or autocast to bf16/fp16; fp16 is skipped on cpu",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per configuration (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before timing")
    parser.add_argument(
        "--image-size", type=int, default=None, help="side of x_t (default 256; 64 with --smoke); a multiple of 32"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--out", default=None, help="JSON file for the list of records (rewritten after each)")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny models (UNet width 32 at 64x64, 2-layer CLIP at 32x32) to test the script",
    )
    args = parser.parse_args(argv)
    if args.device not in ("cpu", "cuda", "all") and not args.device.startswith("cuda:"):
        parser.error(f"--device must be cpu, cuda, cuda:N or all, got {args.device!r}")
    if args.repeats < 1 or args.warmup < 0 or min(args.batch) < 1:
        parser.error("--repeats and --batch must be >= 1 and --warmup >= 0")
    if args.image_size is not None and (args.image_size < 32 or args.image_size % 32):
        parser.error(
            f"--image-size must be a positive multiple of 32 (the UNet halves it 5 times), got {args.image_size}"
        )
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    return run(parse_args(argv))


if __name__ == "__main__":
    main()
