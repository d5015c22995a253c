from pathlib import Path

import numpy as np
import pytest

from gankit_runtime import GankitError, SeedRanges, fastseeds, latent_for_seed, latents_for_seeds, parse_seeds

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


@pytest.mark.parametrize("text", ["", "a", "1-", "-1", "3-1", "1,,2", "1-2-3", "1.5", "0-4294967296", "1,1",
                                  "0-10,5", "5-9,0-5"])
def test_bad_seeds_are_refused(text):
    with pytest.raises(GankitError):
        parse_seeds(text)


@pytest.mark.parametrize("z_dim", [1, 100, 512])
@pytest.mark.parametrize("seed", GOLDEN_SEEDS)
def test_latents_equal_the_recorded_numpy_values(seed, z_dim):
    want = GOLDEN[f"seed{seed}_z{z_dim}"]
    np.testing.assert_array_equal(latent_for_seed(seed, z_dim), want)
    # In a batch large enough for the vectorised path, at any position.
    batch = [seed] + [s for s in range(1000, 2100) if s != seed]
    assert len(batch) >= latents_for_seeds.__globals__["FAST_FROM"]
    got = latents_for_seeds(batch[::-1], z_dim)
    np.testing.assert_array_equal(got[-1], want)


def test_vectorised_path_equals_numpy_on_many_seeds_and_odd_sizes():
    rng = np.random.default_rng(7)
    seeds = np.concatenate([rng.integers(0, 2**32, 3000, dtype=np.int64), [0, 2**32 - 1]])
    for z_dim in (1, 3, 100, 101, 512):  # 512: past one MT19937 twist of words
        got, short = fastseeds._vectorised(seeds.astype(np.uint32), z_dim)
        want = np.stack([np.random.RandomState(int(s)).randn(z_dim).astype(np.float32) for s in seeds[~short]])
        np.testing.assert_array_equal(got[~short], want)
    # ~0.1% of seeds run short of candidates at z_dim 100: they come from RandomState, still exact
    _, short = fastseeds._vectorised(seeds.astype(np.uint32), 100)
    assert short.any()
    full = fastseeds.latents(seeds, 100)
    np.testing.assert_array_equal(full[short], np.stack([np.random.RandomState(int(s)).randn(100).astype(np.float32)
                                                         for s in seeds[short]]))


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


def near_boundary_case(x1: float, x2: float) -> tuple[float, float, float]:
    """A candidate pair (x1, x2') whose Gaussian f * x2' lies on a float32 rounding boundary: x2 moved (by
    bisection) until legacy_gauss's value, with the C library's log, is the midpoint between two float32s."""
    import math

    def gauss(x: float) -> float:
        r2 = x1 * x1 + x * x
        return x * math.sqrt(-2.0 * math.log(r2) / r2)

    v32 = np.float32(gauss(x2))
    target = (float(v32) + float(np.nextafter(v32, np.float32(np.inf)))) / 2
    lo, hi = x2 * (1 - 1e-6), x2 * (1 + 1e-6)
    if (gauss(lo) - target) * (gauss(hi) - target) > 0:
        raise AssertionError("no boundary in the bracket")
    for _ in range(80):
        mid = (lo + hi) / 2
        if (gauss(mid) - target) * (gauss(lo) - target) > 0:
            lo = mid
        else:
            hi = mid
    return x1, lo, x1 * x1 + lo * lo


def test_gaussians_near_a_float32_boundary_are_settled_with_the_c_library_s_log():
    """An ulp of log(r2) changes the float32 of a Gaussian that lies on a rounding boundary: there the vectorised
    path (numpy's SIMD log) recomputes with the C library's log, RandomState's own. Constructed inputs: a log
    off by one ulp either way is set right; a value far from any boundary is left alone."""
    import math

    from gankit_runtime.fastseeds import near_boundary, settle_near_boundaries

    flipped = 0
    for start in [(0.3, 0.5), (-0.61, 0.12), (0.05, -0.7), (0.7, 0.2), (0.41, -0.33), (-0.2, 0.8)]:
        x1, x2, r2 = near_boundary_case(*start)
        exact_log = math.log(r2)
        want = np.float32(x2 * math.sqrt(-2.0 * exact_log / r2)), np.float32(x1 * math.sqrt(-2.0 * exact_log / r2))
        for wrong_log in (np.nextafter(exact_log, -np.inf), np.nextafter(exact_log, np.inf)):
            f = math.sqrt(-2.0 * float(wrong_log) / r2)
            z = np.array([[[x2 * f, x1 * f]]])
            flipped += np.float32(z[0, 0, 0]) != want[0]
            assert near_boundary(z)[0, 0, 0]
            settle_near_boundaries(z, np.array([[x1]]), np.array([[x2]]), np.array([[r2]]))
            assert (np.float32(z[0, 0, 0]), np.float32(z[0, 0, 1])) == want
    assert flipped  # the constructed cases include values whose float32 an ulp of log does change
    far = np.array([[[0.123456789, -1.5]]])
    assert not near_boundary(far).any() and settle_near_boundaries(far.copy(), far[..., 0], far[..., 1], far[..., 0]) == 0
