import numpy as np
import pytest

from noisybench.errors import ConfigError
from noisybench.noise import NoiseSpec, apply_noise, parse_noise


def labels_of(counts):
    return np.concatenate([np.full(n, c) for c, n in enumerate(counts)])


@pytest.mark.parametrize("kind", ["symmetric", "asymmetric"])
@pytest.mark.parametrize("rate", [0.2, 0.4, 0.45])
def test_rate_is_exact_within_one_sample_per_class(kind, rate):
    counts = [101, 57, 230, 9, 64]
    true = labels_of(counts)
    noisy = apply_noise(true, 5, NoiseSpec(kind, rate), seed=3)
    for c, n in enumerate(counts):
        flipped = int(np.sum(noisy[true == c] != c))
        assert abs(flipped - rate * n) <= 1, (c, flipped, rate * n)
    assert abs(np.mean(noisy != true) - rate) <= len(counts) / len(true)


def test_asymmetric_noise_follows_the_pair_flip_map():
    true = labels_of([50] * 4)
    noisy = apply_noise(true, 4, NoiseSpec("asymmetric", 0.4), seed=0)
    changed = noisy != true
    assert changed.any()
    assert np.array_equal(noisy[changed], (true[changed] + 1) % 4)


def test_symmetric_noise_reaches_every_other_class_and_never_keeps_the_label():
    true = labels_of([400] * 5)
    noisy = apply_noise(true, 5, NoiseSpec("symmetric", 0.5), seed=1)
    changed = noisy != true
    for c in range(5):
        targets = set(noisy[changed & (true == c)])
        assert targets == set(range(5)) - {c}


def test_noise_is_seeded():
    true = labels_of([30] * 10)
    a = apply_noise(true, 10, NoiseSpec("symmetric", 0.4), seed=7)
    b = apply_noise(true, 10, NoiseSpec("symmetric", 0.4), seed=7)
    c = apply_noise(true, 10, NoiseSpec("symmetric", 0.4), seed=8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_instance_noise_exact_rate_and_depends_on_features():
    rng = np.random.default_rng(0)
    true = labels_of([100] * 4)
    features = rng.normal(size=(len(true), 16))
    noisy = apply_noise(true, 4, NoiseSpec("instance", 0.3), seed=2, features=features)
    assert np.sum(noisy != true) == round(0.3 * len(true))
    other = apply_noise(true, 4, NoiseSpec("instance", 0.3), seed=2, features=features[::-1].copy())
    assert not np.array_equal(noisy, other)


def test_instance_noise_without_features_fails_clearly():
    with pytest.raises(ConfigError, match="features"):
        apply_noise(labels_of([10, 10]), 2, NoiseSpec("instance", 0.3), seed=0)


@pytest.mark.parametrize(
    "spec, message",
    [("gaussian:0.4", "unknown noise type 'gaussian'"), ("symmetric:abc", "rate"), ("symmetric:1.5", "rate"),
     ("symmetric", "rate")],
)
def test_bad_noise_spec_names_the_fault(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_noise(spec)


def test_parse_noise():
    assert parse_noise("asymmetric:0.4") == NoiseSpec("asymmetric", 0.4)
    assert parse_noise("none") == NoiseSpec("none", 0.0)
