"""bdlib: a teaching implementation of Blended Diffusion (Avrahami, Lischinski, Fried, CVPR 2022).

Usage::

    import bdlib
    world = bdlib.load_world("toy")  # or "paper"
    result = bdlib.edit(world, "scene.png", "mask.png", "a red circle", samples=4)
    result.best  # (1, 3, H, W) in [-1, 1], the background exact
"""

import sys

if sys.argv[:1] == ["-m"]:  # ``python -m ...`` is importing this package before it runs the module asked for
    from bdlib.runtime.startup import running_the_command_line, stop_quietly_while_starting

    if running_the_command_line():
        stop_quietly_while_starting()

from bdlib.core.settings import MethodSettings  # noqa: E402 (after the command line's Ctrl-C handler)
from bdlib.edit import EditResult, edit  # noqa: E402
from bdlib.worlds import load_world  # noqa: E402
from bdlib.worlds.base import World  # noqa: E402

__version__ = "0.1.0"
__all__ = ["EditResult", "MethodSettings", "World", "edit", "load_world"]
