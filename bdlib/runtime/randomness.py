"""Randomness in bdlib: one rule on every device, and one stream per sample.

**The rule.** Every random draw comes from a CPU ``torch.Generator`` seeded from the user's seed; the tensor
is drawn on the CPU and then moved to the device. Nothing draws on a GPU generator, and a function that draws
refuses to run without a generator (nothing falls back to the global RNG). So

- the same seed gives the same noise on every device (a student can compare a CPU run with a GPU run: the
  results differ only by float rounding of the networks, never by different noise), and
- a generator can never end up on the wrong device (a CUDA generator asked for a CPU tensor, or the reverse,
  is a runtime error in PyTorch).

**One stream per sample.** Sample ``i`` of an edit draws everything it needs (the start noise, each step's
noise, the noised background, its augmentations) from its own generator, seeded by ``(seed, i)`` through
numpy's ``SeedSequence``, which mixes any non-negative integers into a well-spread 64-bit state. A sample is
therefore a function of ``(seed, i)`` alone: 64 samples drawn as one batch, as 8 batches of 8, or spread over
4 processes are the same samples (up to the float rounding of batched kernels) and rank in the same order.

Draws that the official code shares across a batch (its one background noise per step) come from a *group*
stream seeded by ``(seed, group)``: samples ``4j … 4j+3`` of an official edit share group ``j`` (the official batch
of 4, :func:`bdlib.core.official.group_streams`), and in the benchmark every task is its own group, so a task's
shared noise does not depend on which tasks share bdlib's batch either.

**Where the global RNG is still used, and why.** PyTorch's own initialisers (``nn.Linear``, ``nn.Conv2d``, ...) draw
from the global RNG when a network is built. bdlib builds its networks inside :func:`seeded_construction`: the
global RNG is forked, seeded from a seed, and restored afterwards, so building a world leaves the caller's global
state where it was and the initial weights depend on the seed alone (a test checks that loading the worlds, edits,
grids, samplers, scenes and benchmark rows never move the global RNG).

**On a GPU.** The same seed gives the same noise on a GPU as on the CPU, but some CUDA kernels used in guidance
(``adaptive_avg_pool2d`` and ``grid_sample`` backward, atomics in the attention backward) add in a
nondeterministic order, so two runs on one GPU can differ in the last bits and a guided chain can amplify that.
``MethodSettings(deterministic=True)`` turns on ``torch.use_deterministic_algorithms`` for the edit (slower, and
refused by PyTorch where an operation has no deterministic version).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch

MAX_SEED = 2**63  # seeds are integers in [0, 2**63): the range of torch.Generator.manual_seed's signed int64
_SAMPLE, _GROUP = 0, 1  # first word of a stream's key, so sample and group streams never coincide


def check_seed(seed: object) -> int:
    """Return ``seed`` if it is an integer in ``[0, 2**63)``; raise a ValueError that says what to pass."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if not 0 <= int(seed) < MAX_SEED:
        raise ValueError(f"seed must be in [0, 2**63), got {seed}: pass a non-negative integer below 9.2e18")
    return int(seed)


def stream_seed(*key: int) -> int:
    """A 63-bit generator seed mixed from the integers ``key`` (numpy's ``SeedSequence``): distinct keys give
    unrelated streams, and seeds that differ only in high bits give different streams too."""
    state = np.random.SeedSequence([int(k) for k in key]).generate_state(1, dtype=np.uint64)[0]
    return int(state) >> 1


def cpu_generator(*key: int) -> torch.Generator:
    """A CPU generator seeded by ``stream_seed(*key)``."""
    return torch.Generator(device="cpu").manual_seed(stream_seed(*key))


@contextlib.contextmanager
def seeded_construction(seed: int = 0) -> Iterator[None]:
    """Build networks here: PyTorch's initialisers draw from a forked global RNG seeded with ``seed``, and the
    caller's global RNG is restored on the way out."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(check_seed(seed))
        yield


def check_cpu_generator(generator: torch.Generator | None) -> None:
    """Refuse a missing generator, or one that is not on the CPU: bdlib draws on the CPU from a generator the user's
    seed made, and moves the tensor (the rule above)."""
    if generator is None:
        raise ValueError(
            "bdlib draws every random number from a CPU generator seeded by your seed, never from the global RNG: "
            "pass generator=torch.Generator().manual_seed(seed)"
        )
    if getattr(generator, "device", None) is None or generator.device.type != "cpu":
        raise ValueError(
            f"bdlib draws all random numbers from CPU generators and moves them to the device, so that a seed gives "
            f"the same noise everywhere; got a generator on {generator.device}: use torch.Generator().manual_seed(s)"
        )


def randn_on(
    shape: Sequence[int], generator: torch.Generator, device: torch.device | str, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``torch.randn(shape)`` from a CPU generator, moved to ``device`` and cast to ``dtype`` (drawn in float32
    whatever ``dtype``: the same seed gives the same noise in a float32 and a float64 chain)."""
    check_cpu_generator(generator)
    return torch.randn(tuple(shape), generator=generator).to(device, dtype)


class SampleStreams:
    """The random streams of a batch of samples: one generator per sample, one per group of samples.

    ``keys[i]`` identifies sample ``i`` (e.g. ``(i,)`` in an edit, ``(task, j)`` in the benchmark) and
    ``groups[i]`` the group whose shared draws it receives. Every method returns a tensor on ``device``
    with the batch in its first dimension, row ``i`` drawn from sample ``i``'s own generator.
    """

    def __init__(
        self, seed: int, keys: Sequence[Sequence[int]], groups: Sequence[int] | None = None, device="cpu"
    ) -> None:
        seed = check_seed(seed)
        if not keys:
            raise ValueError("SampleStreams needs at least one sample")
        self.device = torch.device(device)
        self.generators = [cpu_generator(seed, _SAMPLE, *key) for key in keys]
        self.groups = list(groups) if groups is not None else [0] * len(keys)
        if len(self.groups) != len(self.generators):
            raise ValueError(f"{len(keys)} samples but {len(self.groups)} group labels")
        self._group_generators = {g: cpu_generator(seed, _GROUP, g) for g in dict.fromkeys(self.groups)}

    @classmethod
    def for_edit(cls, seed: int, indices: Sequence[int], device="cpu") -> SampleStreams:
        """Samples ``indices`` of one edit: sample ``i`` has key ``(i,)``; all of them share group 0."""
        return cls(seed, [(int(i),) for i in indices], None, device)

    def __len__(self) -> int:
        return len(self.generators)

    def subset(self, rows: Sequence[int]) -> SampleStreams:
        """The streams of ``rows`` only; they share their generators with this object (draws advance both)."""
        return self._assemble(
            [self.generators[i] for i in rows], [self.groups[i] for i in rows], self._group_generators, self.device
        )

    @classmethod
    def stack(cls, parts: Sequence[SampleStreams]) -> SampleStreams:
        """Several independent sets of streams as one batch (e.g. a grid of single-sample edits): each part keeps
        its own samples and its own groups, even where their labels coincide."""
        generators, groups, group_generators = [], [], {}
        for n, part in enumerate(parts):
            generators += part.generators
            groups += [(n, g) for g in part.groups]
            group_generators |= {(n, g): gen for g, gen in part._group_generators.items()}
        return cls._assemble(generators, groups, group_generators, parts[0].device)

    @classmethod
    def _assemble(cls, generators, groups, group_generators, device) -> SampleStreams:
        streams = object.__new__(cls)
        streams.device, streams.generators, streams.groups = device, list(generators), list(groups)
        streams._group_generators = {g: group_generators[g] for g in dict.fromkeys(streams.groups)}
        return streams

    def randn(self, shape: Sequence[int]) -> torch.Tensor:
        """``(B, *shape)`` standard normal noise, row ``i`` from sample ``i``'s stream."""
        return torch.stack([torch.randn(tuple(shape), generator=g) for g in self.generators]).to(self.device)

    def uniform_params(self, shape: Sequence[int]) -> torch.Tensor:
        """``(B, *shape)`` float64 uniform [0, 1) numbers on the CPU, row ``i`` from sample ``i``'s stream: the
        parameters of random transforms (angles, shifts), which are turned into maps before they go to the device."""
        return torch.stack([torch.rand(tuple(shape), generator=g, dtype=torch.float64) for g in self.generators])

    def randn_shared(self, shape: Sequence[int]) -> torch.Tensor:
        """``(B, *shape)`` noise drawn once per group (in order of first appearance) and given to its samples."""
        drawn = {g: torch.randn(tuple(shape), generator=gen) for g, gen in self._group_generators.items()}
        return torch.stack([drawn[g] for g in self.groups]).to(self.device)
