"""Many samples and the benchmark across processes and GPUs, with PyTorch's own engine (``torch.distributed``).

    torchrun --nproc_per_node 4 -m bdlib edit --world paper --device cuda ... --samples 64
    torchrun --nproc_per_node 2 -m bdlib evaluate

Under ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address) every process
joins one group: NCCL when it runs on CUDA, gloo on the CPU. The work is cut into the batches a single process
would run (an edit's samples in batches of ``--batch-size``, by default one batch per rank; a benchmark row's
tasks in batches of ``--batch-size``), rank ``r`` of ``W`` runs batches ``r, r + W, ...`` on its own device
(``cuda:LOCAL_RANK`` for ``--device cuda``), and rank 0 gathers them, puts them back in order and writes the
outputs once. Sample ``i`` draws from its own stream ``(seed, i)`` (:mod:`bdlib.runtime.randomness`) and every batch
holds the same samples as in one process, so the results are *identical* to a one-process run with the same
batch size (``torchrun --nproc_per_node 4 ... --samples 64`` = one process with ``--batch-size 16``). Other
batch sizes give the same samples up to the float rounding of batched kernels, which a strongly guided chain
can amplify (README, "Many samples and many processes"). Without torchrun nothing changes.

A failure on any rank is shared with all of them (:func:`run_everywhere`): every rank stops with that rank's
message, and nothing is written. The commands check their input before they join the group (:func:`init`), from
the same arguments and files on every rank, so a bad input stops every rank at once with the same error; rank 0
alone prints such an error (:func:`printed_here`) and every rank exits with 2. torchrun then reports the failed
ranks in its own words and exits with 1: that report is torchrun's, and bdlib cannot change it.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class Context:
    """This process's place in the group: ``rank`` of ``size`` (1 when not launched by torchrun)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that gathers, ranks, prints and writes."""
        return self.rank == 0

    def device(self, requested: str) -> str:
        """The device of this rank: ``cuda:LOCAL_RANK`` when ``requested`` is "cuda" under torchrun, else as asked."""
        if self.distributed and requested == "cuda":
            return f"cuda:{self.local_rank}"
        return requested

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's items (e.g. batches): ``items[rank::size]``."""
        return list(items[self.rank :: self.size])


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


_joined = False  # whether this process has joined torchrun's group (init)


class EveryRankError(ValueError):
    """A user's mistake that every rank raised with the same message (shared by :func:`run_everywhere`)."""


def printed_here(error: BaseException) -> bool:
    """Whether this process prints ``error``: always without torchrun; under it, rank 0 alone prints an error that
    every rank has (a bad input refused before the group formed, or one shared by :func:`run_everywhere`)."""
    context = from_environment()
    if not context.distributed or context.is_main:
        return True
    return not (isinstance(error, EveryRankError) or (isinstance(error, ValueError | OSError) and not _joined))


def from_environment() -> Context:
    """This process's place as torchrun set it (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), before joining the group: the
    commands check their input with it, so that a bad input stops every rank before any collective call."""
    if not launched_by_torchrun():
        return Context()
    return Context(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))


def init(device: str, timeout_minutes: float = 60.0) -> Context:
    """Join the process group when launched by torchrun (gloo on the CPU, NCCL on CUDA); else a one-process context."""
    context = from_environment()
    if not context.distributed:
        return context
    if not dist.is_initialized():
        cuda = device.startswith("cuda")
        if cuda:
            if not torch.cuda.is_available():
                raise ValueError("--device cuda, but this machine has no CUDA GPU: use --device cpu (gloo)")
            torch.cuda.set_device(context.local_rank)
        dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(minutes=timeout_minutes))
    global _joined
    _joined = True
    return context


def close(context: Context) -> None:
    """Leave the process group (after the last collective call)."""
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()


def run_everywhere(context: Context, work: Callable[[], T]) -> T:
    """Run ``work`` on every rank; if it raises on any rank, raise on *every* rank with that rank's message.

    The ranks agree after the work (one ``all_gather_object``), so no rank goes on to a collective call that a
    failed rank will never join, and rank 0 never writes partial results.
    """
    if not context.distributed:
        return work()
    outcome, error = None, None
    try:
        outcome = work()
    except (ValueError, FileNotFoundError) as caught:  # a user's mistake: the same message everywhere
        error = ("user", f"{caught}")
    except Exception as caught:  # a bug: name it, then stop every rank
        error = ("bug", f"{type(caught).__name__}: {caught}")
    verdicts: list[Any] = [None] * context.size
    dist.all_gather_object(verdicts, error)
    for rank, verdict in enumerate(verdicts):
        if verdict is not None:
            kind, message = verdict
            text = f"rank {rank} of {context.size} failed: {message}"
            raise EveryRankError(text) if kind == "user" else RuntimeError(text)
    return outcome  # type: ignore[return-value]


def gather(context: Context, value: T) -> list[T] | None:
    """Every rank's ``value`` on rank 0 (in rank order), None on the others; ``[value]`` without torchrun.

    Tensors travel as CPU tensors (``gather_object`` pickles them)."""
    if not context.distributed:
        return [value]
    received: list[Any] | None = [None] * context.size if context.is_main else None
    dist.gather_object(value, received, dst=0)
    return received


def batches(count: int, size: int) -> list[list[int]]:
    """``range(count)`` cut into consecutive batches of ``size`` (the last one shorter)."""
    return [list(range(first, min(first + size, count))) for first in range(0, count, size)]


def sharded_edit(
    context: Context,
    world,
    image,
    mask,
    prompt: str,
    *,
    samples: int,
    seed: int,
    settings,
    batch_size: int | None = None,
    invert_mask: bool = False,
    dilate: int = 0,
    callback: Callable[[Any], None] | None = None,
):
    """:func:`bdlib.edit.edit` with its batches of samples spread over the ranks (default batch size: one batch per
    rank): rank 0 returns the ranked :class:`~bdlib.edit.EditResult` of all ``samples``, the other ranks None."""
    from bdlib.edit import check_memory, check_settings, draw_samples, finish_edit, prepare_edit

    size = batch_size or -(-samples // context.size)

    def work():
        check_settings(world, settings)
        prepared = prepare_edit(world, image, mask, prompt, settings, invert_mask, dilate)
        mine = context.shard(batches(samples, size))
        check_memory(world, prepared, sum(len(batch) for batch in mine), size)
        return prepared, [(batch, draw_samples(world, prepared, seed, batch, callback)) for batch in mine]

    prepared, drawn = run_everywhere(context, work)
    pieces = gather(context, drawn)
    if pieces is None:
        return None
    found = {
        i: (image_i, distance_i)
        for piece in pieces
        for batch, (images, scores) in piece
        for i, image_i, distance_i in zip(batch, images, scores, strict=True)
    }
    return finish_edit(
        prepared, torch.stack([found[i][0] for i in range(samples)]), torch.stack([found[i][1] for i in range(samples)])
    )
