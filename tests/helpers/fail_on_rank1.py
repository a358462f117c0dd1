"""``python -m bdlib`` with rank 1's samples and tasks failing: the torchrun failure test (tests/test_distributed.py).

Launched by torchrun as a script; rank 1's ``draw_samples`` and benchmark batches raise, every other rank works.
"""

from __future__ import annotations

import importlib
import os
import sys

from bdlib.__main__ import main

edit_module = importlib.import_module("bdlib.edit")  # the module (``bdlib.edit`` is also the function)
evaluation = importlib.import_module("bdlib.bench.evaluation")


def _fail_on_rank1(real):
    def wrapper(*args, **kwargs):
        if os.environ.get("RANK") == "1":
            raise RuntimeError("simulated failure on rank 1")
        return real(*args, **kwargs)

    return wrapper


edit_module.draw_samples = _fail_on_rank1(edit_module.draw_samples)
evaluation._run_batch = _fail_on_rank1(evaluation._run_batch)
sys.exit(main(sys.argv[1:]))
