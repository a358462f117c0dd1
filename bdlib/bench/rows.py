"""The rows of the toy editing benchmark (``python -m bdlib evaluate``): one knob of the method at a time.

Algorithm 2 at the world's defaults first, then Algorithm 1 over λ (at the world's Algorithm 1 defaults), the
guidance scale with one and eight CLIP views, k over every respaced index of its transition, the paper's and
the official code's choices, removal recipes on the remove tasks, blending ablations, and what the speed
defaults cost (steps, precision).
"""

from __future__ import annotations

from dataclasses import dataclass

from bdlib.core.settings import PAPER_LAM, MethodSettings
from bdlib.worlds.base import World


@dataclass(frozen=True)
class Setting:
    """One row of the benchmark: a name, the method's settings, how many ranked samples per task, and how the
    remove tasks run: ``removal="fill"`` is the shipped recipe (:func:`bdlib.applications.remove_object`: the
    region filled smoothly, then blended diffusion with the empty prompt from ``removal_k``, by default
    :func:`~bdlib.applications.default_removal_k`), ``"prior"`` the paper's plain recipe (the empty prompt
    from the row's own k). ``kinds`` keeps only some task kinds (None: all)."""

    name: str
    settings: MethodSettings
    samples: int = 1
    removal: str = "fill"
    removal_k: int | None = None
    kinds: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.removal not in ("fill", "prior"):
            raise ValueError(f"removal must be 'fill' or 'prior', got {self.removal!r}")


EDIT_KINDS = ("add", "replace", "recolor")  # the kinds with a target object: the ones k changes


def k_values(world: World, fast: bool = False, respacing: str | None = None) -> list[int]:
    """k rows: every respaced index across the toy world's transition (the change inside the mask starts at about a
    sixth of the chain and saturates a little past half; the text match keeps rising beyond), then the rest
    more coarsely. Fast mode: six values across the transition. ``respacing``: another chain than the world's."""
    last = world.diffusion(respacing or world.defaults.respacing).num_steps - 1
    if fast:
        return sorted({round(last * f) for f in (0.25, 1 / 3, 5 / 12, 0.5, 7 / 12, 0.75)})
    dense = range(round(last / 6), round(last * 7 / 12) + 1)
    coarse = {round(last * f) for f in (2 / 3, 0.75, 5 / 6, 11 / 12, 1.0)}
    return sorted(set(dense) | coarse)


def lam_values(fast: bool = False) -> tuple[float, ...]:
    """λ values: 0 (the background is free), then log-spaced from 10 to 10⁵ (four decades), with the toy world's
    default 3000 and, past 10⁴, the unstable end; the full rows add 3·10⁴."""
    return (0.0, 10.0, 100.0, 1e3, 3e3, 1e4, 1e5) if fast else (0.0, 10.0, 100.0, 1e3, 3e3, 1e4, 3e4, 1e5)


def removal_rows(world: World, fast: bool = False) -> list[Setting]:
    """The remove tasks under each removal recipe: the paper's (the empty prompt from the default k, and from the
    noisiest index) and the shipped one (fill, then the empty prompt from a low k) over its k."""
    base = world.defaults
    last = world.diffusion(base.respacing).num_steps - 1
    only = ("remove",)
    rows = [Setting(f"remove: prior only, k={base.k}", base, removal="prior", kinds=only)]
    if not fast:
        rows.append(Setting(f"remove: prior only, k={last}", base.with_(k=last), removal="prior", kinds=only))
    fills = (
        (round(last / 4), round(last / 2))
        if fast
        else (round(last / 8), round(last / 4), round(last * 3 / 8), round(last / 2), base.k)
    )
    rows += [Setting(f"remove: fill, k={k}", base, removal_k=k, kinds=only) for k in fills]
    return rows


def default_settings(world: World, fast: bool = False) -> list[Setting]:
    """The benchmark's rows (``fast``: fewer, for a quick look and the tests)."""
    base = world.defaults
    local = world.defaults_for("local")
    rows = [Setting("alg2 default", base)]
    rows += [Setting(f"alg1 lam={lam:g}", local.with_(lam=lam)) for lam in lam_values(fast)]
    if not fast:
        lam = local.lam if local.lam is not None else PAPER_LAM
        rows.append(
            Setting(f"alg1 lam={lam:g} scale={base.guidance_scale:g}", local.with_(guidance_scale=base.guidance_scale))
        )
    scales = (1000.0, 10000.0) if fast else (100.0, 1000.0, 10000.0)
    for scale in scales:
        views = (8,) if scale < base.guidance_scale and not fast else (1, 8)  # below the default: views only
        rows += [Setting(f"alg2 scale={scale:g} aug={a}", base.with_(guidance_scale=scale, views=a)) for a in views]
    rows += [Setting(f"alg2 k={k}", base.with_(k=k), kinds=EDIT_KINDS) for k in k_values(world, fast)]
    rows.append(Setting("alg2 paste once at the end", base.with_(blending="end")))
    rows.append(Setting("alg2 no blending, no paste", base.with_(blending="none")))
    rows.append(Setting("alg2 official", base.with_(official=True)))
    if "noise_aware" in world.capabilities:
        rows.append(Setting("alg2 noise-aware clip", base.with_(noise_aware=True)))
    rows.append(Setting("alg2 top-1 of 4 ranked", base, samples=4))
    rows += removal_rows(world, fast)
    if not fast:  # the paper's choices where bdlib's default differs, and what the speed defaults cost
        rows.append(Setting("alg2 cosine distance", base.with_(distance="cosine")))
        rows.append(Setting("alg2 gradient w.r.t. x̂_0", base.with_(gradient="pred_x0")))
        if base.respacing.isdigit():  # plain step counts only ("ddim50", "10,10,10" have no simple double)
            doubled = str(2 * int(base.respacing))
            rows.append(Setting(f"alg2 {doubled} steps", base.with_(respacing=doubled, k=2 * base.k + 1)))
        rows.append(Setting("alg2 bf16", base.with_(precision="bf16")))
        rows.append(Setting("alg2 bf16-clip", base.with_(precision="bf16-clip")))
    return rows
