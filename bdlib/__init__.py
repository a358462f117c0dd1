"""bdlib: a teaching implementation of Blended Diffusion (Avrahami, Lischinski, Fried, CVPR 2022).

Usage::

    import bdlib
    world = bdlib.load_world("toy")  # or "paper"
    result = bdlib.edit(world, "scene.png", "mask.png", "a red circle", samples=4)
    result.best  # (1, 3, H, W) in [-1, 1], the background exact
"""

from bdlib.core.settings import MethodSettings
from bdlib.edit import EditResult, edit
from bdlib.worlds import load_world
from bdlib.worlds.base import World

__version__ = "0.1.0"
__all__ = ["EditResult", "MethodSettings", "World", "edit", "load_world"]
