"""A fixed, seeded benchmark of toy editing tasks, judged by the independent oracle.

For each setting (algorithm, λ, k, guidance scale, augmentations, paper/official, plain/noise-aware
CLIP, single sample or top-1 of N ranked), every task is edited once and scored:

- ``text_match``: the oracle finds the target colour *and* shape in the region (add, replace, recolor),
  or finds no object there (remove); background tasks have no target and are left out;
- ``clean``: the oracle's clean-object probability ≥ ½ for the regions that should hold an object;
- ``bg_max_abs`` / ``bg_mean_abs``: the change outside the mask (0 means the background is exact);
- ``fg_mean_abs``: the change inside the mask (how far the edit moved away from the input);
- ``clip_distance``: masked distance of the result to the prompt by the plain (guiding) CLIP;
- ``seconds_per_edit``: wall time of the batched run divided by the number of edits.

Tasks are batched (different images, masks and prompts in one batch) so a setting costs a few
sampler runs, not one per task.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from bdlib.blend import edit_progressive
from bdlib.edit import rank_distances
from bdlib.method import MethodSettings
from bdlib.randomness import SampleStreams
from bdlib.worlds.base import World
from bdlib.worlds.toy.tasks import EditTask, generate_tasks
from bdlib.worlds.toy.vocab import COLORS, SHAPES


@dataclass(frozen=True)
class Setting:
    """One row of the benchmark: a name, the method's settings, and how many ranked samples per task."""

    name: str
    settings: MethodSettings
    samples: int = 1


def run_setting(world: World, tasks: Sequence[EditTask], setting: Setting, batch_size: int = 64, seed: int = 0):
    """Edit every task under ``setting``; return ``(results (T, 3, H, W), distances (T,), seconds)``.

    Sample ``j`` of task ``i`` draws from its own stream ``(seed, i, j)`` and task ``i``'s shared draws from group
    ``i`` (:mod:`bdlib.randomness`), so a task's result does not depend on which tasks share its batch. Tasks
    with an empty prompt (removals: no CLIP term) run in batches of their own.
    """
    start = time.time()
    n = setting.samples
    results: dict[int, torch.Tensor] = {}
    distances: dict[int, torch.Tensor] = {}
    per_batch = max(1, batch_size // n)
    with_prompt = [i for i, task in enumerate(tasks) if task.prompt.strip()]
    without = [i for i, task in enumerate(tasks) if not task.prompt.strip()]
    for group in (with_prompt, without):
        for first in range(0, len(group), per_batch):
            chunk = group[first : first + per_batch]
            best, dist = _run_batch(world, [tasks[i] for i in chunk], chunk, setting, seed)
            results.update(zip(chunk, best, strict=True))
            distances.update(zip(chunk, dist, strict=True))
    seconds = time.time() - start
    order = range(len(tasks))
    return torch.stack([results[i] for i in order]), torch.stack([distances[i] for i in order]), seconds


def _run_batch(world: World, chunk: Sequence[EditTask], indices: Sequence[int], setting: Setting, seed: int):
    """One batch of tasks (all with a prompt, or all without), ``setting.samples`` each: the best-ranked result
    of each task and its distance (the first sample and NaN without a prompt)."""
    n, settings = setting.samples, setting.settings
    device = world.device
    init = torch.stack([t.image for t in chunk]).repeat_interleave(n, 0).to(device)  # (B·n, 3, S, S)
    mask = torch.stack([t.mask for t in chunk]).repeat_interleave(n, 0).to(device)
    has_prompt = bool(chunk[0].prompt.strip())
    text = None
    if has_prompt:
        text = torch.cat([world.encode_prompt(t.prompt, settings.noise_aware) for t in chunk])
        text = text.repeat_interleave(n, 0).to(device)
    keys = [(i, j) for i in indices for j in range(n)]
    streams = SampleStreams(seed, keys, groups=[i for i, _ in keys], device=device)
    *_, last = edit_progressive(
        world.unet, world.diffusion(settings.respacing), world.guidance_clip(settings.noise_aware), init, mask, text,
        settings, streams, lpips=world.lpips,
    )  # fmt: skip
    final = last["result"]
    if not has_prompt:
        first = torch.arange(len(chunk), device=final.device) * n
        return final[first].float().cpu(), torch.full((len(chunk),), float("nan"))
    plain_text = torch.cat([world.encode_prompt(t.prompt) for t in chunk]).repeat_interleave(n, 0)
    dist = rank_distances(world, final, mask, plain_text.to(device), settings.official)
    best = dist.view(len(chunk), n).argmin(dim=1) + torch.arange(len(chunk), device=dist.device) * n
    return final[best].float().cpu(), dist[best].float().cpu()


@torch.no_grad()
def score(world: World, tasks: Sequence[EditTask], results: torch.Tensor, distances: torch.Tensor) -> dict:
    """The metrics of one setting, overall and per task kind."""
    if world.oracle is None:
        raise ValueError(f"the {world.name} world has no oracle: the benchmark needs the toy world")
    images = torch.stack([t.image for t in tasks])
    masks = torch.stack([t.mask for t in tasks])
    keep = 1 - masks
    change = (results - images).abs() * keep  # (T, 3, H, W)
    edit_strength = (results - images).abs() * masks
    verdict = world.oracle.judge(results.to(world.oracle.device), masks.to(world.oracle.device))
    rows = []
    for i, task in enumerate(tasks):
        row = {
            "kind": task.kind,
            "bg_max_abs": float(change[i].max()),
            "bg_mean_abs": float(change[i].sum() / (3 * keep[i].sum()).clamp(min=1)),
            "fg_mean_abs": float(edit_strength[i].sum() / (3 * masks[i].sum()).clamp(min=1)),
        }
        if task.prompt.strip():  # an empty prompt has no distance (NaN)
            row["clip_distance"] = float(distances[i])
        color, shape = int(verdict["color"][i]), int(verdict["shape"][i])
        if task.kind in ("add", "replace", "recolor"):
            target = (COLORS.index(task.target[0]), SHAPES.index(task.target[1]))
            row["text_match"] = float((color, shape) == target)
            row["clean"] = float(verdict["clean"][i] >= 0.5)
        elif task.kind == "remove":
            row["text_match"] = float(color == -1)
        rows.append(row)
    return summarize(rows)


def _mean(rows: list[dict], key: str) -> float | None:
    values = [row[key] for row in rows if key in row]
    return round(sum(values) / len(values), 4) if values else None


def summarize(rows: list[dict]) -> dict:
    """Averages over all rows and per kind (keys absent from a row are skipped); ``bg_max_abs`` is a max."""
    keys = ("text_match", "clean", "bg_mean_abs", "fg_mean_abs", "clip_distance")
    out = {key: _mean(rows, key) for key in keys}
    out["bg_max_abs"] = max(row["bg_max_abs"] for row in rows)
    out["per_kind"] = {}
    for kind in sorted({row["kind"] for row in rows}):
        subset = [row for row in rows if row["kind"] == kind]
        out["per_kind"][kind] = {key: _mean(subset, key) for key in keys} | {"n": len(subset)}
    return out


def default_settings(world: World, fast: bool = False) -> list[Setting]:
    """The benchmark's rows: Algorithm 2 with the world's defaults, then one knob at a time."""
    base = world.defaults
    last = world.diffusion(base.respacing).num_steps - 1
    ks = sorted({round(last * f) for f in ((0.5, 0.75) if fast else (0.25, 0.5, 0.75, 0.9))})
    rows = [Setting("alg2 default", base)]
    lams = (0.0, 10000.0) if fast else (0.0, 3.0, 10.0, 10000.0)
    rows += [Setting(f"alg1 lam={lam:g}", base.with_(algorithm="local", lam=lam)) for lam in lams]
    scales = (1000.0, 10000.0) if fast else (100.0, 1000.0, 10000.0)
    for scale in scales:
        views = (8,) if scale < base.guidance_scale and not fast else (1, 8)  # below the default: views only
        rows += [
            Setting(f"alg2 scale={scale:g} aug={a}", base.with_(guidance_scale=scale, augmentations=a)) for a in views
        ]
    rows += [Setting(f"alg2 k={k}", base.with_(start_index=k)) for k in ks]
    rows.append(Setting("alg2 official", base.with_(official=True)))
    if "noise_aware" in world.capabilities:
        rows.append(Setting("alg2 noise-aware clip", base.with_(noise_aware=True)))
    rows.append(Setting("alg2 top-1 of 4 ranked", base, samples=4))
    if not fast:  # what the speed defaults cost: twice the steps, and bf16 autocast (all networks, or CLIP only)
        if base.respacing.isdigit():  # plain step counts only ("ddim50", "10,10,10" have no simple double)
            doubled = str(2 * int(base.respacing))
            rows.append(
                Setting(f"alg2 {doubled} steps", base.with_(respacing=doubled, start_index=2 * base.start_index + 1))
            )
        rows.append(Setting("alg2 bf16", base.with_(precision="bf16")))
        rows.append(Setting("alg2 bf16-clip", base.with_(precision="bf16-clip")))
    return rows


def run_benchmark(
    world: World,
    n_tasks: int = 200,
    seed: int = 0,
    fast: bool = False,
    batch_size: int = 64,
    settings: Sequence[Setting] | None = None,
) -> dict:
    """Run ``settings`` (default: :func:`default_settings`) on ``n_tasks`` seeded tasks balanced over the kinds.

    A row whose settings and sample count equal an earlier row's (in the toy world the default is also ``k=18`` and
    ``scale=1000 aug=8``) reuses that row's results and seconds: with the same seeds it would repeat them."""
    tasks = generate_tasks(n_tasks, seed)
    report = {"world": world.name, "n_tasks": n_tasks, "seed": seed, "settings": []}
    done: dict[tuple, tuple] = {}  # rows with the same settings (e.g. the default and its k) run once
    for setting in settings if settings is not None else default_settings(world, fast):
        key = (setting.settings, setting.samples)
        if key not in done:
            done[key] = run_setting(world, tasks, setting, batch_size, seed)
        results, distances, seconds = done[key]
        metrics = score(world, tasks, results, distances)
        metrics["seconds_per_edit"] = round(seconds / len(tasks), 4)
        settings = {k: v for k, v in asdict(setting.settings).items()}
        report["settings"].append({"name": setting.name, "samples": setting.samples, "settings": settings, **metrics})
        print(f"{setting.name:28s} match={metrics['text_match']} clean={metrics['clean']} "
              f"bg_max={metrics['bg_max_abs']:.3f} s/edit={metrics['seconds_per_edit']}", flush=True)  # fmt: skip
    return report
