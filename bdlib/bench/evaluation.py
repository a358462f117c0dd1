"""A fixed, seeded benchmark of toy editing tasks, judged by the independent oracle.

For each setting (algorithm, λ, k, guidance scale, augmentations, paper/official, plain/noise-aware
CLIP, single sample or top-1 of N ranked), every task is edited once and scored:

- ``text_match``: the oracle finds the target colour *and* shape in the region (add, replace, recolor),
  or finds no object there (remove, with the row's removal recipe); background tasks have no target and are
  left out;
- ``clean``: the oracle's clean-object probability ≥ ½ for the regions that should hold an object;
- ``bg_max_abs`` / ``bg_mean_abs``: the change outside the mask (0 means the background is exact), and
  ``bg_mean_before_paste`` the same for the chain's own result, before the final paste;
- ``seam``: the mean colour jump across the mask's border (``seam_input``: the input's own);
- ``fg_mean_abs``: the change inside the mask (how far the edit moved away from the input);
- ``clip_distance``: masked distance of the result to the prompt by the plain (guiding) CLIP;
- ``seconds_per_edit``: wall time of the batched run divided by the number of edits.

Tasks are batched (different images, masks and prompts in one batch) so a setting costs a few
sampler runs, not one per task.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from bdlib.applications import default_removal_k
from bdlib.bench.rows import Setting, default_settings
from bdlib.core import variants
from bdlib.edit import rank_distances
from bdlib.inpaint import smooth_fill
from bdlib.runtime import distributed
from bdlib.runtime.randomness import SampleStreams
from bdlib.worlds.base import World
from bdlib.worlds.toy.tasks import EditTask, generate_tasks
from bdlib.worlds.toy.vocab import COLORS, SHAPES


@dataclass
class SettingRun:
    """The edits of one row: the best result per task, its CLIP distance (NaN without a prompt), the chain's
    result before the final paste, and the wall time."""

    results: torch.Tensor  # (T, 3, S, S)
    distances: torch.Tensor  # (T,)
    unpasted: torch.Tensor  # (T, 3, S, S)
    seconds: float


def run_setting(
    world: World,
    tasks: Sequence[EditTask],
    setting: Setting,
    batch_size: int = 64,
    seed: int = 0,
    context: distributed.Context | None = None,
) -> SettingRun | None:
    """Edit every task under ``setting``.

    Sample ``j`` of task ``i`` draws from its own stream ``(seed, i, j)`` and task ``i``'s shared draws from group
    ``i`` (:mod:`bdlib.runtime.randomness`), so a task's result does not depend on which tasks share its batch. Tasks
    with an empty prompt (removals: no CLIP term) run in batches of their own, with the row's removal recipe.
    Under torchrun (``context``) the ranks share the batches and rank 0 gets the whole run (the others None).
    """
    context = context or distributed.Context()
    start = time.time()
    per_batch = max(1, batch_size // setting.samples)
    with_prompt = [i for i, task in enumerate(tasks) if task.prompt.strip()]
    without = [i for i, task in enumerate(tasks) if not task.prompt.strip()]
    chunks = [
        group[first : first + per_batch]
        for group in (with_prompt, without)
        for first in range(0, len(group), per_batch)
    ]

    def work():
        return [
            (chunk, _run_batch(world, [tasks[i] for i in chunk], chunk, setting, seed))
            for chunk in context.shard(chunks)
        ]

    pieces = distributed.gather(context, distributed.run_everywhere(context, work))
    if pieces is None:
        return None
    done = {
        i: parts
        for piece in pieces
        for chunk, best in piece
        for i, parts in zip(chunk, zip(*best, strict=True), strict=True)
    }
    results, distances, unpasted = (torch.stack([done[i][part] for i in range(len(tasks))]) for part in range(3))
    return SettingRun(results, distances, unpasted, time.time() - start)


def _removal_batch(world: World, chunk: Sequence[EditTask], setting: Setting):
    """The images and settings of a batch of remove tasks under the row's removal recipe."""
    images = torch.stack([t.image for t in chunk])
    if setting.removal == "prior":
        return images, setting.settings
    masks = torch.stack([t.mask for t in chunk])
    k = setting.removal_k if setting.removal_k is not None else default_removal_k(world, setting.settings.respacing)
    return smooth_fill(images, masks), setting.settings.with_(k=k)


def _run_batch(world: World, chunk: Sequence[EditTask], indices: Sequence[int], setting: Setting, seed: int):
    """One batch of tasks (all with a prompt, or all without), ``setting.samples`` each: the best-ranked result of
    each task, its distance (for an empty prompt: the first sample and NaN) and its result before the paste."""
    n = setting.samples
    device = world.device
    has_prompt = bool(chunk[0].prompt.strip())
    images, settings = (torch.stack([t.image for t in chunk]), setting.settings)
    if not has_prompt:
        images, settings = _removal_batch(world, chunk, setting)
    init = world.tensor(images.repeat_interleave(n, 0))  # (B·n, 3, S, S)
    mask = world.tensor(torch.stack([t.mask for t in chunk]).repeat_interleave(n, 0))
    text = None
    if has_prompt:
        text = torch.cat([world.encode_prompt(t.prompt, settings.noise_aware) for t in chunk])
        text = world.tensor(text.repeat_interleave(n, 0))
    keys = [(i, j) for i in indices for j in range(n)]
    streams = SampleStreams(seed, keys, groups=[i for i, _ in keys], device=device)
    final, unpasted = variants.run(world, settings, init, mask, text, streams)
    offsets = torch.arange(len(chunk), device=final.device) * n
    if has_prompt:
        plain_text = torch.cat([world.encode_prompt(t.prompt) for t in chunk]).repeat_interleave(n, 0)
        dist = rank_distances(world, final, mask, plain_text.to(device), settings.official)
        best = dist.view(len(chunk), n).argmin(dim=1) + offsets
        best_dist = dist[best].float().cpu()
    else:
        best, best_dist = offsets, torch.full((len(chunk),), float("nan"))
    return final[best].float().cpu().clamp(-1, 1), best_dist, unpasted[best].float().cpu()


def background_error(images: torch.Tensor, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean ``|result - input|`` over the pixels (and channels) *outside* the mask, per image: (N,)."""
    keep = (1 - mask).expand_as(images)  # (N, 3, H, W)
    return ((images - image).abs() * keep).sum(dim=(1, 2, 3)) / keep.sum(dim=(1, 2, 3)).clamp(min=1)


def region_change(images: torch.Tensor, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean ``|result - input|`` over the pixels *inside* the mask, per image: (N,). 0 = the input unchanged."""
    return background_error(images, image, 1 - mask)


def seam_jump(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean ``|Δ colour|`` between horizontally or vertically adjacent pixels on the two sides of the mask's
    border, per image (B,): how visible the seam is (compare with the input's own value)."""
    colour_x = (images[..., :, 1:] - images[..., :, :-1]).abs().mean(dim=1)  # (B, H, W-1)
    colour_y = (images[..., 1:, :] - images[..., :-1, :]).abs().mean(dim=1)  # (B, H-1, W)
    m = masks[:, 0]
    cross_x = (m[..., :, 1:] != m[..., :, :-1]).float()
    cross_y = (m[..., 1:, :] != m[..., :-1, :]).float()
    total = (colour_x * cross_x).sum(dim=(1, 2)) + (colour_y * cross_y).sum(dim=(1, 2))
    return total / (cross_x.sum(dim=(1, 2)) + cross_y.sum(dim=(1, 2))).clamp(min=1)


@torch.no_grad()
def score(world: World, tasks: Sequence[EditTask], run: SettingRun) -> dict:
    """The metrics of one setting, overall and per task kind."""
    if world.oracle is None:
        raise ValueError(f"the {world.name} world has no oracle: the benchmark needs the toy world")
    results = run.results
    images = torch.stack([t.image for t in tasks])
    masks = torch.stack([t.mask for t in tasks])
    bg_max = ((results - images).abs() * (1 - masks)).amax(dim=(1, 2, 3))
    bg_mean, fg_mean = background_error(results, images, masks), region_change(results, images, masks)
    bg_before_paste = background_error(run.unpasted, images, masks)
    seams, input_seams = seam_jump(results, masks), seam_jump(images, masks)
    verdict = world.oracle.judge(results.to(world.oracle.device), masks.to(world.oracle.device))
    rows = []
    for i, task in enumerate(tasks):
        row = {
            "kind": task.kind,
            "bg_max_abs": float(bg_max[i]),
            "bg_mean_abs": float(bg_mean[i]),
            "bg_mean_before_paste": float(bg_before_paste[i]),
            "fg_mean_abs": float(fg_mean[i]),
            "seam": float(seams[i]),
            "seam_input": float(input_seams[i]),
        }
        if task.prompt.strip():  # an empty prompt has no distance (NaN)
            row["clip_distance"] = float(run.distances[i])
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
    keys = (
        "text_match",
        "clean",
        "bg_mean_abs",
        "bg_mean_before_paste",
        "fg_mean_abs",
        "seam",
        "seam_input",
        "clip_distance",
    )
    out = {key: _mean(rows, key) for key in keys}
    out["bg_max_abs"] = max(row["bg_max_abs"] for row in rows)
    out["per_kind"] = {}
    for kind in sorted({row["kind"] for row in rows}):
        subset = [row for row in rows if row["kind"] == kind]
        out["per_kind"][kind] = {key: _mean(subset, key) for key in keys} | {"n": len(subset)}
    return out


def run_benchmark(
    world: World,
    n_tasks: int = 200,
    seed: int = 0,
    fast: bool = False,
    batch_size: int = 64,
    settings: Sequence[Setting] | None = None,
    context: distributed.Context | None = None,
) -> dict | None:
    """Run ``settings`` (default: :func:`bdlib.bench.rows.default_settings`) on ``n_tasks`` seeded tasks
    balanced over the kinds.

    A row whose settings and sample count equal an earlier row's (in the toy world the default is also ``k=18`` and
    ``scale=1000 aug=8``) reuses that row's results and seconds: with the same seeds it would repeat them.
    Under torchrun (``context``) the ranks share each row's batches; rank 0 scores and returns the report, the
    other ranks None."""
    context = context or distributed.Context()
    all_tasks = generate_tasks(n_tasks, seed)
    report = {"world": world.name, "n_tasks": n_tasks, "seed": seed, "settings": []}
    done: dict[tuple, SettingRun] = {}  # rows with the same settings (e.g. the default and its k) run once
    if settings is None:
        settings = default_settings(world, fast)
    for setting in settings:
        tasks = [t for t in all_tasks if setting.kinds is None or t.kind in setting.kinds]
        key = (setting.settings, setting.samples, setting.removal, setting.removal_k, setting.kinds)
        if key not in done:
            done[key] = run_setting(world, tasks, setting, batch_size, seed, context)
        if not context.is_main:
            continue
        metrics = score(world, tasks, done[key])
        metrics["seconds_per_edit"] = round(done[key].seconds / len(tasks), 4)
        row = {"name": setting.name, "samples": setting.samples, "settings": asdict(setting.settings)}
        kinds = list(setting.kinds) if setting.kinds else None
        row |= {"removal": setting.removal, "removal_k": setting.removal_k, "kinds": kinds, "n": len(tasks)}
        report["settings"].append(row | metrics)
        print(
            f"{setting.name:28s} match={metrics['text_match']} clean={metrics['clean']} "
            f"bg_max={metrics['bg_max_abs']:.3f} s/edit={metrics['seconds_per_edit']}",
            flush=True,
        )
    return report if context.is_main else None


REPORT = Path(__file__).resolve().parents[2] / "figures" / "evaluation.json"  # the committed benchmark


def load_report(path: str | Path = REPORT) -> dict:
    """The benchmark's report (``python -m bdlib evaluate`` writes it; the repository ships one)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no benchmark report at {path}: run `python -m bdlib evaluate` (about an hour on CPU)")
    return json.loads(path.read_text())


def report_rows(report: dict, prefix: str | Sequence[str], keys: Sequence[str]) -> list[dict]:
    """The rows whose name starts with ``prefix`` (or is one of the names), as ``{"setting": name, key: value}``
    dicts for :func:`bdlib.course.viz.table`; ``"kind:KEY"`` picks a per-kind value, e.g. ``"add:text_match"``."""

    def wanted(name: str) -> bool:
        return name.startswith(prefix) if isinstance(prefix, str) else name in prefix

    def value(row: dict, key: str):
        if ":" in key:
            kind, metric = key.split(":")
            return row["per_kind"].get(kind, {}).get(metric)
        return row.get(key)

    return [
        {"setting": row["name"], **{key: value(row, key) for key in keys}}
        for row in report["settings"]
        if wanted(row["name"])
    ]
