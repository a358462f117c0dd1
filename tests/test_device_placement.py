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
