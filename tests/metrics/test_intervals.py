import numpy as np
import pytest

from hprune.metrics.intervals import ImageScores, paired_bootstrap, stratified_indices, t_interval


def scores(correct, quality, n_cat=4):
    n = len(correct)
    return ImageScores(np.asarray(correct, float), np.asarray(quality, float), np.arange(n) % n_cat)


def test_t_interval_matches_the_textbook_and_collapses_for_one_run():
    low, high = t_interval([0.10, 0.12, 0.14])
    assert (low + high) / 2 == pytest.approx(0.12)
    assert high - low == pytest.approx(2 * 4.302653 * 0.02 / np.sqrt(3), rel=1e-5)
    assert t_interval([0.2]) == [0.2, 0.2]


def test_resamples_keep_each_categorys_count():
    category = np.repeat(np.arange(3), [2, 5, 9])
    idx = stratified_indices(category, 50, np.random.default_rng(0))
    assert idx.shape == (50, 16)
    assert all((np.bincount(category[row], minlength=3) == [2, 5, 9]).all() for row in idx)


def test_paired_bootstrap_finds_a_clear_gap_and_none_between_equals():
    rng = np.random.default_rng(0)
    n = 256
    teacher = scores(np.ones(n), np.full(n, 0.9))
    ours = [scores(rng.random(n) < 0.95, 0.88 + 0.01 * rng.random(n)) for _ in range(3)]
    worse = [scores(rng.random(n) < 0.6, 0.70 + 0.01 * rng.random(n)) for _ in range(3)]
    out = paired_bootstrap(teacher, ours, worse, resamples=500)
    assert out["diff_ci95"][0] <= out["diff"] <= out["diff_ci95"][1] < 0
    assert out["p_not_better"] < 0.01
    assert out["baseline_over_ours_ci95"][0] > 3
    same = paired_bootstrap(teacher, ours, ours, resamples=200)
    assert same["diff"] == 0 and same["diff_ci95"] == [0, 0] and same["p_not_better"] == 1.0


def test_the_point_estimate_is_the_reported_degradation():
    """Semantic is the mean of category means, quality the mean over images, as ShapesEval reports."""
    teacher = scores([1, 1, 1, 0, 1, 1, 1, 1], [0.9] * 8)
    row = scores([1, 0, 1, 0, 0, 1, 1, 0], [0.6] * 8)
    out = paired_bootstrap(teacher, [row], [teacher], resamples=10)
    t_sem, r_sem = np.mean([1, 1, 1, 0.5]), np.mean([0.5, 0.5, 1, 0])
    assert out["diff"] == pytest.approx(((t_sem - r_sem) / t_sem + (0.9 - 0.6) / 0.9) / 2)
