"""The randomness rule: CPU generators only, one stream per sample, so batching never changes a sample."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from bdlib.bench.evaluation import run_setting
from bdlib.bench.rows import Setting
from bdlib.core.augment import ExtendingAugmentations
from bdlib.core.sampling import sample_progressive
from bdlib.edit import edit
from bdlib.runtime.randomness import MAX_SEED, SampleStreams, check_seed, stream_seed
from bdlib.worlds.toy.tasks import example_task, generate_tasks


@pytest.fixture(scope="module")
def example():
    task = example_task()
    return task.image, task.mask


@pytest.mark.parametrize("official", [False, True])
def test_samples_do_not_depend_on_batching(random_toy_world, example, official):
    image, mask = example
    kwargs = dict(samples=8, seed=3, official=official, views=4)
    one_batch = edit(random_toy_world, image, mask, "a red circle", **kwargs)
    two_by_four = edit(random_toy_world, image, mask, "a red circle", batch_size=4, **kwargs)
    one_by_one = edit(random_toy_world, image, mask, "a red circle", batch_size=1, **kwargs)
    for other in (two_by_four, one_by_one):
        torch.testing.assert_close(other.images, one_batch.images, rtol=0, atol=1e-4)
        assert torch.equal(other.order, one_batch.order)  # the same ranking
        torch.testing.assert_close(other.distances, one_batch.distances, rtol=0, atol=1e-5)


def test_sample_i_is_the_same_in_a_larger_edit(random_toy_world, example):
    image, mask = example
    two = edit(random_toy_world, image, mask, "a red circle", samples=2, seed=9)
    five = edit(random_toy_world, image, mask, "a red circle", samples=5, seed=9)
    for rank in range(2):
        drawn = int(two.order[rank])
        torch.testing.assert_close(five.images[list(five.order).index(drawn)], two.images[rank], rtol=0, atol=1e-4)


def test_benchmark_tasks_do_not_depend_on_their_batch(random_toy_world):
    tasks = generate_tasks(5, seed=0)
    setting = Setting("t", random_toy_world.defaults.with_(views=2), samples=2)
    together = run_setting(random_toy_world, tasks, setting, batch_size=64, seed=1)
    apart = run_setting(random_toy_world, tasks, setting, batch_size=2, seed=1)
    torch.testing.assert_close(apart.results, together.results, rtol=0, atol=1e-4)
    torch.testing.assert_close(apart.distances, together.distances, rtol=0, atol=1e-5, equal_nan=True)


def test_streams_are_keyed_and_groups_share_their_draws():
    a = SampleStreams(7, [(0,), (1,), (2,)], groups=[0, 0, 1]).randn((4,))
    b = SampleStreams(7, [(2,), (1,)]).randn((4,))
    assert torch.equal(a[2], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], a[1])
    shared = SampleStreams(7, [(0,), (1,), (2,)], groups=[0, 0, 1]).randn_shared((4,))
    assert torch.equal(shared[0], shared[1]) and not torch.equal(shared[0], shared[2])
    assert stream_seed(1, 2) != stream_seed(2, 1) and stream_seed(1) != stream_seed(1 + 2**32)


def test_augmentations_follow_each_samples_stream():
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    augment = ExtendingAugmentations(4)
    whole = augment(images, SampleStreams.for_edit(0, [0, 1, 2]))  # (12, 3, 16, 16), copy-major
    last = augment(images[2:], SampleStreams.for_edit(0, [2]))  # (4, 3, 16, 16)
    assert torch.equal(whole[2::3], last)


def test_only_cpu_generators_and_valid_seeds():
    gpu_generator = SimpleNamespace(device=torch.device("cuda", 0))  # no GPU here: only its device is read
    with pytest.raises(ValueError, match="CPU generators"):
        next(sample_progressive(lambda x, t: x, None, (1, 3, 4, 4), generator=gpu_generator))
    for bad in (-1, MAX_SEED, 1.5, True, "3"):
        with pytest.raises(ValueError, match="seed must be"):
            check_seed(bad)
    assert check_seed(MAX_SEED - 1) == MAX_SEED - 1


def test_library_code_never_draws_from_the_global_rng(random_toy_world, example):
    """The rule: every draw comes from a generator seeded by the user's seed. Loading the worlds, an edit, a grid,
    a sampler run, scenes, tasks and a benchmark row leave the global RNG exactly where the caller put it."""
    from bdlib.grid import edit_grid
    from bdlib.worlds import load_world
    from bdlib.worlds.toy.ddpm import toy_diffusion
    from bdlib.worlds.toy.scenes import generate_scenes

    image, mask = example
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    toy = load_world("toy")
    load_world("paper-random", with_lpips=False)
    edit(random_toy_world, image, mask, "a red circle", samples=2, seed=1, views=3)
    edit(random_toy_world, image, mask, "a red circle", seed=1, official=True, views=3)
    edit_grid(random_toy_world, image, mask, "a red circle", "k", [2, 4], seed=1)
    list(sample_progressive(toy.unet, toy_diffusion("10"), (1, 3, 32, 32), generator=torch.Generator().manual_seed(0)))
    generate_scenes(4, seed=2)
    tasks = generate_tasks(10, 0)
    run_setting(random_toy_world, tasks[:3], Setting("row", random_toy_world.defaults))
    assert torch.equal(torch.get_rng_state(), before), "library code moved the global RNG"


def test_a_draw_without_a_generator_is_refused():
    with pytest.raises(ValueError, match="generator"):
        list(sample_progressive(lambda x, t: x, None, (1, 3, 4, 4)))
    with pytest.raises(ValueError, match="generator"):
        ExtendingAugmentations(4)(torch.zeros(1, 3, 8, 8))
    from bdlib.worlds.toy.scenes import generate_scenes

    with pytest.raises(ValueError, match="seed or a CPU generator"):
        generate_scenes(2)
