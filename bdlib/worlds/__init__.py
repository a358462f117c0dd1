"""The worlds an edit runs in, behind one :class:`~bdlib.worlds.base.World` interface: ``toy`` (models we train,
shipped with the package, offline on a CPU) and ``paper`` (the paper's networks; ``paper-random`` for their
architecture with random weights)."""

from __future__ import annotations

from bdlib.runtime.devices import check_device
from bdlib.worlds.base import World

WORLDS = ("toy", "paper", "paper-random")


def load_world(name: str, **kwargs) -> World:
    """Load a world by name: ``"toy"`` (shipped weights, offline), ``"paper"`` (downloaded checkpoints) or
    ``"paper-random"`` (the paper's networks with random weights: no download, for pipeline and timing checks).

    Keyword arguments go to the world's loader: ``bdlib.worlds.toy.world.load_toy_world`` or
    ``bdlib.worlds.paper.world.load_paper_world`` (``device``; for the toy world ``dtype``, float64 by default;
    for the paper ``cache_dir``, ``random_weights``). A device this machine does not have is refused before
    anything is loaded.
    """
    if "device" in kwargs:
        check_device(kwargs["device"])
    if name == "toy":
        from bdlib.worlds.toy.world import load_toy_world

        return load_toy_world(**kwargs)
    if name in ("paper", "paper-random"):
        from bdlib.worlds.paper.world import load_paper_world

        if name == "paper-random":
            kwargs["random_weights"] = True
        return load_paper_world(**kwargs)
    raise ValueError(f"unknown world {name!r}: the worlds are {', '.join(WORLDS)}")


def check_prompt(name: str, prompt: str) -> None:
    """Refuse a prompt that world ``name`` cannot read (``World.check_prompt``), without loading its networks."""
    if name == "toy":
        from bdlib.worlds.toy.world import check_toy_prompt as check
    elif name in ("paper", "paper-random"):
        from bdlib.worlds.paper.world import check_clip_prompt as check
    else:
        raise ValueError(f"unknown world {name!r}: the worlds are {', '.join(WORLDS)}")
    check(prompt)
