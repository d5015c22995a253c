import numpy as np
import pytest

from gankit_runtime import GankitError, latent_for_seed, latents_for_seeds, parse_seeds


def test_ranges_and_lists_in_order():
    assert parse_seeds("0-3,10,7-8") == [0, 1, 2, 3, 10, 7, 8]
    assert parse_seeds("5") == [5]
    assert parse_seeds(" 1 , 2 ") == [1, 2]
    assert len(parse_seeds("0-9999")) == 10000


@pytest.mark.parametrize("text", ["", "a", "1-", "-1", "3-1", "1,,2", "1-2-3", "1.5", "0-4294967296", "1,1"])
def test_bad_seeds_are_refused(text):
    with pytest.raises(GankitError):
        parse_seeds(text)


def test_latent_formula_is_the_documented_one():
    z = latent_for_seed(42, 100)
    assert z.dtype == np.float32 and z.shape == (100,)
    np.testing.assert_array_equal(z, np.random.RandomState(42).randn(100).astype(np.float32))


def test_latent_depends_on_its_seed_alone():
    batch = latents_for_seeds([7, 3, 1000], 16)
    np.testing.assert_array_equal(batch[1], latent_for_seed(3, 16))
    np.testing.assert_array_equal(batch, np.stack([latent_for_seed(s, 16) for s in (7, 3, 1000)]))
    assert not np.array_equal(batch[0], batch[1])
