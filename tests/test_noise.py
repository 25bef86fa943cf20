import numpy as np
import pytest

from noisybench.errors import ConfigError
from noisybench.noise import NoiseSpec, apply_noise, noise_record, parse_noise, realised_rate


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
    assert parse_noise("uniform:0.8") == NoiseSpec("uniform", 0.8) and parse_noise("uniform:0.8").synthetic
    assert parse_noise("none") == NoiseSpec("none", 0.0)


@pytest.mark.parametrize("rate", [0.4, 0.8])
def test_realised_flip_fraction_of_uniform_and_symmetric_noise_on_a_large_label_vector(rate):
    """``uniform:R`` redraws round(R·n) labels from all K classes, so (K−1)/K·R of them end up
    wrong (40% on 10 classes: 36%); ``symmetric:R`` moves exactly R of them to another class."""
    true = labels_of([20_000] * 10)
    uniform = apply_noise(true, 10, NoiseSpec("uniform", rate), seed=5)
    wrong = uniform != true
    assert abs(wrong.mean() - rate * 9 / 10) < 0.003  # five binomial standard deviations of 200,000 labels
    assert realised_rate((uniform != true).astype(np.int8)) == wrong.mean()
    assert set(uniform[wrong & (true == 3)]) == set(range(10)) - {3}  # every other class is reached
    symmetric = apply_noise(true, 10, NoiseSpec("symmetric", rate), seed=5)
    assert (symmetric != true).mean() == rate


def test_uniform_noise_redraws_round_r_n_samples_chosen_over_the_whole_set():
    """Chosen over the whole set, not per class: the changed labels of a class vary around
    their expectation; every sample that changed was one of round(R·n) redrawn."""
    true = labels_of([1000] * 4)
    noisy = apply_noise(true, 4, NoiseSpec("uniform", 0.5), seed=0)
    changed = [int(np.sum(noisy[true == c] != c)) for c in range(4)]
    assert len(set(changed)) > 1 and sum(changed) <= 2000
    assert abs(sum(changed) - 2000 * 3 / 4) < 5 * np.sqrt(2000 * 3 / 16)


def test_noise_record_names_kind_rate_and_the_realised_rate_over_known_labels():
    flags = np.array([1, 0, 0, 1, -1, -1], dtype=np.int8)
    assert noise_record(NoiseSpec("uniform", 0.4), flags) == {"type": "uniform", "rate": 0.4, "realised_rate": 0.5}
    human = noise_record(NoiseSpec("human", 0.18, "aggre"), np.zeros(4, dtype=np.int8))
    assert human == {"type": "human", "rate": 0.18, "label_set": "aggre", "realised_rate": 0.0}
    assert noise_record(NoiseSpec("real", float("nan")), None) == {"type": "real", "rate": None, "realised_rate": None}
    assert realised_rate(np.full(3, -1)) is None


def test_val_noise_gives_the_validation_labels_the_runs_noise_and_leaves_training_alone():
    """data.val_noise (ELR's code: 5,000 noisy validation images): the val labels get the
    training set's kind of noise, drawn apart from it; the training labels stay as they were."""
    from noisybench.api import make_config
    from noisybench.datasets import build_dataset, labels_of

    clean, noisy = (build_dataset(make_config("ce", "digits", None, ["noise=asymmetric:0.4", *o]))
                    for o in ([], ["data.val_noise=true"]))
    assert np.array_equal(clean.train_labels, noisy.train_labels)
    truth, labels = labels_of(clean.val), labels_of(noisy.val)
    changed = labels != truth
    assert abs(changed.mean() - 0.4) <= 10 / len(truth) and np.array_equal(labels[changed], (truth[changed] + 1) % 10)
    for bad, message in (("noise=none", "not synthetic"), ("noise=instance:0.3", "not instance")):
        with pytest.raises(ConfigError, match=message):
            build_dataset(make_config("ce", "digits", None, [bad, "data.val_noise=true"]))
