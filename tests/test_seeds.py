from pathlib import Path

import numpy as np
import pytest
from gankit_runtime import GankitError, SeedRanges, latent_for_seed, latents_for_seeds, parse_seeds

# Recorded once from numpy.random.RandomState(seed).randn(z_dim).astype(float32) (numpy 2.4.6): the formula's
# values, not a recomputation of it.
GOLDEN = np.load(Path(__file__).parent / "golden" / "latents.npz")
GOLDEN_SEEDS = (0, 1, 42, 2**31, 2**32 - 1)


def test_ranges_and_lists_in_order():
    assert parse_seeds("0-3,10,7-8") == [0, 1, 2, 3, 10, 7, 8]
    assert parse_seeds("5") == [5]
    assert parse_seeds(" 1 , 2 ") == [1, 2]
    assert len(parse_seeds("0-9999")) == 10000


def test_any_number_of_seeds_is_lazy():
    seeds = parse_seeds("0-4294967295")
    assert isinstance(seeds, SeedRanges) and len(seeds) == 2**32 and seeds[-1] == 2**32 - 1
    assert seeds[123456789] == 123456789 and list(seeds[:3]) == [0, 1, 2]
    assert len(seeds.ranges) == 1  # a range, not four billion numbers


@pytest.mark.parametrize(
    "text", ["", "a", "1-", "-1", "3-1", "1,,2", "1-2-3", "1.5", "0-4294967296", "1,1", "0-10,5", "5-9,0-5"]
)
def test_bad_seeds_are_refused(text):
    with pytest.raises(GankitError):
        parse_seeds(text)


@pytest.mark.parametrize("z_dim", [1, 100, 512])
@pytest.mark.parametrize("seed", GOLDEN_SEEDS)
def test_latents_equal_the_recorded_numpy_values(seed, z_dim):
    want = GOLDEN[f"seed{seed}_z{z_dim}"]
    np.testing.assert_array_equal(latent_for_seed(seed, z_dim), want)
    # In a batch, at any position (the batch path reseeds one RandomState: nothing may leak between seeds).
    batch = [seed] + [s for s in range(1000, 1100) if s != seed]
    got = latents_for_seeds(batch[::-1], z_dim)
    np.testing.assert_array_equal(got[-1], want)
    np.testing.assert_array_equal(latents_for_seeds(batch, z_dim)[0], want)


def test_latent_depends_on_its_seed_alone():
    batch = latents_for_seeds([7, 3, 1000], 16)
    np.testing.assert_array_equal(batch[1], latent_for_seed(3, 16))
    big = latents_for_seeds(list(range(5000)), 16)
    np.testing.assert_array_equal(big[3], batch[1])
    assert not np.array_equal(batch[0], batch[1])


def test_seeds_outside_the_range_are_refused():
    with pytest.raises(GankitError, match="outside"):
        latents_for_seeds([1, 2**32], 4)
    with pytest.raises(GankitError, match="outside"):
        latents_for_seeds(list(range(100)) + [-1], 4)
    with pytest.raises(GankitError, match="outside"):
        latent_for_seed(2**32, 4)
    for bad in (2**70, 1.5, "7"):
        with pytest.raises(GankitError, match="integers"):
            latent_for_seed(bad, 4)
