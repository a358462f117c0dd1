"""Device bugs caught without a GPU: whole edits on a simulated accelerator (tests/simulated_device.py).

Every tensor or generator placed on the wrong device raises there, as it would on CUDA. The same edits on
the CPU give the same numbers, bit for bit: the randomness rule (CPU generators, tensors moved to the device) makes
the noise independent of the device, and ``SameKernels`` makes both sides use the same kernels (a tolerance instead
held on one CPU and failed on another: the chain amplifies the rounding of two fused kernels).
"""

from __future__ import annotations

import copy

import pytest
import torch
from simulated_device import DEVICE, DevicePlacementError, OnDevice, SameKernels, SimulatedAccelerator

from bdlib.edit import edit
from bdlib.grid import edit_grid
from bdlib.worlds.toy.tasks import example_task

CASES = {
    "blended ddpm": {},
    "blended ddim": {"ddim": True},
    "blended official": {"official": True},
    "local ddpm": {"algorithm": "local", "lam": 100.0},
    "local ddim official": {"algorithm": "local", "ddim": True, "official": True},
    "noise-aware": {"noise_aware": True},
    "gradient wrt x0": {"gradient": "pred_x0"},
}


@pytest.fixture(scope="module")
def worlds(random_toy_world):
    """The random toy world (with a noise-aware CLIP) on the CPU and a deep copy of it on the simulated device."""
    from bdlib.worlds.toy.noise_aware_clip import build_toy_noise_aware_clip

    cpu = copy.copy(random_toy_world)
    cpu.noise_aware_clip = build_toy_noise_aware_clip().eval().requires_grad_(False)
    cpu.__post_init__()
    on_device = copy.deepcopy(cpu)
    with SimulatedAccelerator():
        on_device.to(DEVICE)
    assert isinstance(next(on_device.unet.parameters()), OnDevice)
    return cpu, on_device


@pytest.mark.parametrize("case", list(CASES))
def test_a_whole_edit_runs_on_the_device_and_matches_the_cpu(worlds, case):
    cpu, on_device = worlds
    task = example_task()
    kwargs = dict(samples=2, seed=4, views=3, **CASES[case])
    with SameKernels():
        with SimulatedAccelerator():
            result = edit(on_device, task.image, task.mask, "a red circle", **kwargs)
        reference = edit(cpu, task.image, task.mask, "a red circle", **kwargs)
    assert not isinstance(result.images, OnDevice)  # results come back to the CPU
    assert torch.equal(result.images, reference.images)  # the same noise and the same kernels: the same pixels
    assert torch.equal(result.order, reference.order)


def test_the_simulation_catches_what_a_gpu_refuses():
    with SimulatedAccelerator():
        x = torch.ones(2, 3).to(DEVICE)
        with pytest.raises(DevicePlacementError):
            x + torch.ones(2, 3)  # a CPU tensor in a device operation
        with pytest.raises(DevicePlacementError):
            torch.randn(2, 3, generator=torch.Generator(), device=DEVICE)  # a CPU generator drawing on the device
        with pytest.raises(RuntimeError):
            torch.Generator(device=DEVICE)  # no generator lives on the device
        assert float((x * torch.tensor(2.0)).sum()) == 12.0  # CPU scalars mix, as on CUDA


@pytest.mark.parametrize("field,values,extra", [("k", [2, 5], {}), ("lam", [10.0, 1e3], {"algorithm": "local"})])
def test_a_grid_runs_on_the_device(worlds, field, values, extra):
    cpu, on_device = worlds
    task = example_task()
    with SameKernels():
        with SimulatedAccelerator():
            grid = edit_grid(on_device, task.image, task.mask, "a red circle", field, values, seed=1, **extra)
        reference = edit_grid(cpu, task.image, task.mask, "a red circle", field, values, seed=1, **extra)
    for a, b in zip(grid, reference, strict=True):
        assert torch.equal(a.images, b.images)


# ---------------------------------------------------------------- the rest of the library on the device
# Each runs on the simulated device and on the CPU, under SameKernels, and must give the same numbers bit for bit.


def on_both(worlds, work):
    """``work(world, device)`` on the simulated device and on the CPU: (device answer, CPU answer)."""
    cpu, on_device = worlds
    with SameKernels():
        with SimulatedAccelerator():
            answer = work(on_device, DEVICE)
        reference = work(cpu, torch.device("cpu"))
    return answer, reference


def plain(value):
    """A device answer read back to the CPU (tensors inside tuples, lists and dicts too)."""
    if isinstance(value, OnDevice):
        return value.values
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


@pytest.mark.parametrize("ddim", [False, True])
def test_the_sampler_runs_on_the_device(worlds, ddim):
    from bdlib.core.sampling import sample_progressive

    def work(world, device):
        steps = sample_progressive(
            world.unet,
            world.diffusion("10"),
            (2, 3, 32, 32),
            device=device,
            ddim=ddim,
            eta=0.5,
            generator=torch.Generator().manual_seed(3),
        )
        return [(plain(s.pred_x0), plain(s.x_prev)) for s in steps]

    answer, reference = on_both(worlds, work)
    assert len(answer) == len(reference) == 10
    for (a_x0, a_prev), (r_x0, r_prev) in zip(answer, reference, strict=True):
        assert torch.equal(a_x0, r_x0) and torch.equal(a_prev, r_prev)


def test_the_course_analyses_run_on_the_device(worlds):
    from bdlib.course import analysis
    from bdlib.course.precision_effect import guided_step_change

    task = example_task()

    def work(world, device):
        settings = world.defaults
        generator = torch.Generator().manual_seed(2)
        x_t = torch.randn(1, 3, 32, 32, generator=generator).to(device)
        image, mask = task.image[None].to(device), task.mask[None].to(device)
        text = world.encode_prompt("a red circle")
        return {
            "ratio": analysis.background_step_ratio(world, settings, image, mask, x_t, 5, 100.0),
            "gain": analysis.pred_x0_gain(world, settings, x_t, 5, generator=torch.Generator().manual_seed(4)),
            "bound": analysis.measured_lambda_bound(world, settings, image, mask, x_t, 5, [1.0, 1e4, 1e8]),
            "gradient": plain(analysis.background_gradient(world, settings, image, mask, x_t, 5)),
            # fp32 only: autocast has no kernels for the simulated device (bf16 runs in the CPU tests)
            "precision": guided_step_change(world, image, mask, text, 5, [], torch.Generator().manual_seed(5)),
        }

    answer, reference = on_both(worlds, work)
    assert torch.equal(answer.pop("gradient"), reference.pop("gradient"))
    assert answer == reference


def test_a_benchmark_row_runs_on_the_device(worlds):
    from bdlib.bench.evaluation import run_setting
    from bdlib.bench.rows import Setting
    from bdlib.worlds.toy.tasks import generate_tasks

    tasks = generate_tasks(40, 0)
    chosen = [next(t for t in tasks if t.prompt.strip()), next(t for t in tasks if not t.prompt.strip())]

    def work(world, device):
        run = run_setting(world, chosen, Setting("row", world.defaults.with_(respacing="10", k=3), samples=2))
        return run.results, run.distances, run.unpasted

    answer, reference = on_both(worlds, work)
    for a, r in zip(answer, reference, strict=True):
        assert not isinstance(a, OnDevice)
        assert torch.equal(a, r) or (a.isnan().equal(r.isnan()) and torch.equal(a.nan_to_num(), r.nan_to_num()))


def two_ranks(monkeypatch, work):
    """``work(context)`` as ranks 1 and 0 of a two-process group in this process: the collectives are replaced by
    handing rank 1's answer to rank 0 (the gather) and by running the work directly (no failure to agree on)."""
    from bdlib.runtime import distributed

    sent = []
    monkeypatch.setattr(distributed, "run_everywhere", lambda context, job: job())

    def gather(context, value):
        return [value, *sent] if context.is_main else sent.append(value)

    monkeypatch.setattr(distributed, "gather", gather)
    assert work(distributed.Context(rank=1, size=2)) is None  # only rank 0 gets the result
    return work(distributed.Context(rank=0, size=2))


def test_the_distributed_edit_runs_on_the_device(worlds, monkeypatch):
    from bdlib.core.settings import MethodSettings
    from bdlib.runtime.distributed import sharded_edit

    cpu, on_device = worlds
    task = example_task()
    settings = MethodSettings(respacing="10", k=4, views=3)
    with SameKernels():
        with SimulatedAccelerator():
            result = two_ranks(
                monkeypatch,
                lambda context: sharded_edit(
                    context, on_device, task.image, task.mask, "a red circle", samples=4, seed=6, settings=settings
                ),
            )
        reference = edit(
            cpu, task.image, task.mask, "a red circle", samples=4, seed=6, settings=settings, batch_size=2
        )  # as the ranks split them: one batch each
    assert not isinstance(result.images, OnDevice)
    assert torch.equal(result.images, reference.images) and torch.equal(result.order, reference.order)
