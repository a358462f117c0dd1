"""``python -m bdlib`` that fails loudly if a rank joins torchrun's process group: a bad input must be refused before
(the torchrun refusal test, tests/test_distributed.py)."""

from __future__ import annotations

import sys

import torch.distributed as dist

from bdlib.__main__ import main


def _joined(*args, **kwargs):
    raise RuntimeError("a rank joined the process group although the input should have been refused")


dist.init_process_group = _joined
sys.exit(main(sys.argv[1:]))
