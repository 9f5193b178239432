"""Early-exit heads and thresholds from data: probes, criteria, the threshold chooser and its budget."""

from __future__ import annotations

import numpy as np
import pytest
from tensorsmith.passes import early_exit_fit as F

RNG = np.random.default_rng(0)


def _blobs(n: int, classes: int, dim: int, spread: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = 3.0 * rng.standard_normal((classes, dim))
    y = rng.integers(0, classes, n)
    return centers[y] + spread * rng.standard_normal((n, dim)), y


def test_pool_rows_means_over_sequence_and_space() -> None:
    x = RNG.standard_normal((2, 5, 3))
    np.testing.assert_allclose(F.pool_rows(x), x.mean(axis=1))
    mask = np.array([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]], np.float32)
    np.testing.assert_allclose(F.pool_rows(x, mask)[0], x[0, :2].mean(axis=0))
    img = RNG.standard_normal((2, 4, 3, 3))
    np.testing.assert_allclose(F.pool_rows(img), img.mean(axis=(2, 3)))
    with pytest.raises(ValueError, match=r"cannot pool an activation of shape \(2,\)"):
        F.pool_rows(np.zeros(2))


def test_ridge_classifier_separates_blobs_and_is_calibrated() -> None:
    x, y = _blobs(600, 4, 8, 1.0, seed=1)
    head = F.fit_ridge_classifier(x[:400], y[:400], 4)
    assert head.weight.shape == (4, 8) and head.weight.dtype == np.float32
    logits = head(x[400:])
    assert np.mean(np.argmax(logits, 1) == y[400:]) > 0.95
    assert np.median(F.THRESHOLD_CRITERIA["max-prob"].score(logits, [])) > 0.9  # temperature fitted: confident


def test_ridge_regression_recovers_a_linear_map() -> None:
    x = RNG.standard_normal((200, 6))
    w = RNG.standard_normal((3, 6))
    head = F.fit_ridge_regression(x, x @ w.T + 0.5, l2=1e-8)
    np.testing.assert_allclose(head.weight, w, atol=1e-4)
    np.testing.assert_allclose(head.bias, 0.5, atol=1e-4)


def test_logistic_classifier_option() -> None:
    pytest.importorskip("sklearn")
    x, y = _blobs(300, 3, 5, 1.0, seed=2)
    head = F.fit_classifier(x, y, 4, method="logistic")  # class 3 never appears
    assert np.mean(np.argmax(head(x), 1) == y) > 0.95
    assert np.all(np.argmax(head(x), 1) != 3)
    with pytest.raises(ValueError, match="method 'svm' is not one of ridge, logistic"):
        F.fit_classifier(x, y, 4, method="svm")


def test_one_hot_rejects_labels_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\), got \[0, 3\]"):
        F.one_hot(np.array([0, 3]), 3)


def test_criteria_by_hand() -> None:
    head = np.log(np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]]))
    np.testing.assert_allclose(F.criterion_scores("max-prob", [head], 0), [0.7, 0.4])
    np.testing.assert_allclose(F.criterion_scores("margin", [head], 0), [0.5, 0.05], rtol=1e-6)
    ent = -np.sum(np.exp(head) * head, axis=1)
    np.testing.assert_allclose(F.criterion_scores("entropy", [head], 0), ent)
    assert list(F.fires("entropy", [head], 0, float(ent[0]) + 1e-9)) == [True, False]
    a = np.array([[1.0, 0.0], [1.0, 1.0]])
    b = np.array([[2.0, 0.0], [-1.0, 1.0]])
    assert list(F.fires("cosine", [a, b], 1, 0.5)) == [True, False]
    assert not F.fires("cosine", [a], 0, -1.0).any()  # the first exit has no earlier head
    c = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert list(F.fires("patience", [a, b, c], 2, 0.0, patience=3)) == [True, False]
    assert list(F.fires("patience", [b, c, c], 2, 0.0, patience=2)) == [True, True]
    assert not F.fires("patience", [b, c, c], 0, 0.0, patience=2).any()


def test_cascade_takes_the_first_firing_exit() -> None:
    fire = [np.array([True, False, False]), np.array([True, True, False])]
    taken = F.taken_exits(fire)
    assert list(taken) == [0, 1, 2] and taken.dtype == np.int32
    out = F.select_rows(np.zeros((3, 2)), [np.ones((3, 2)), 2 * np.ones((3, 2))], taken)
    np.testing.assert_array_equal(out[:, 0], [1, 2, 0])


def _noisy_heads(n: int = 2000, classes: int = 5) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Heads that get better with depth; the final output is right 95% of the time."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, classes, n)
    target = np.eye(classes)[y] * 4.0
    heads = [target + s * rng.standard_normal((n, classes)) for s in (3.0, 2.0, 1.2)]
    final = target + 0.8 * rng.standard_normal((n, classes))
    return heads, final, y


@pytest.mark.parametrize("criterion", ["max-prob", "entropy", "margin", "patience"])
@pytest.mark.parametrize("quality", ["accuracy", "agreement"])
@pytest.mark.parametrize("budget", [0.0, 0.5, 2.0])
def test_thresholds_meet_the_budget(criterion: str, quality: str, budget: float) -> None:
    heads, final, y = _noisy_heads()
    plan = F.choose_thresholds(heads, final, criterion, budget, quality, y)
    assert plan.quality_without - plan.quality_with <= budget / 100 + 1e-12
    # the plan's figures are what the cascade does with its thresholds
    fire = [F.fires(criterion, heads, k, t, plan.patience) for k, t in enumerate(plan.thresholds)]
    taken = F.taken_exits(fire)
    out = F.select_rows(final, heads, taken)
    assert plan.quality_with == pytest.approx(np.mean(F.row_quality(F.Quality(quality), out, final, y)))
    for e in plan.exits:
        assert e.fraction_leaving == pytest.approx(np.mean(taken == e.index))
    if budget == 2.0 and criterion != "patience":
        assert sum(e.fraction_leaving for e in plan.exits) > 0.3  # a real budget lets many leave


def test_a_larger_budget_lets_more_leave() -> None:
    heads, final, y = _noisy_heads()
    left = [sum(e.fraction_leaving for e in F.choose_thresholds(heads, final, "max-prob", b, "agreement").exits)
            for b in (0.0, 0.5, 2.0, 10.0)]
    assert left == sorted(left) and left[-1] > left[0]


def test_cosine_quality_and_criterion() -> None:
    rng = np.random.default_rng(4)
    final = rng.standard_normal((500, 16))
    heads = [final + s * rng.standard_normal((500, 16)) for s in (1.0, 0.5, 0.2)]
    plan = F.choose_thresholds(heads, final, "cosine", 0.02, "cosine")
    assert plan.exits[0].fraction_leaving == 0.0  # nothing earlier to agree with
    assert plan.quality_without == pytest.approx(1.0)
    assert plan.quality_with >= 1.0 - 0.02 - 1e-12
    assert sum(e.fraction_leaving for e in plan.exits) > 0.2
    assert "cosine of those leaving" in plan.report()


def test_never_threshold_when_no_row_may_leave() -> None:
    heads, final, y = _noisy_heads()
    wrong = [-h for h in heads]  # every exit wrong where the final output is right
    plan = F.choose_thresholds(wrong, final, "max-prob", 0.0, "agreement")
    assert plan.thresholds == [F.THRESHOLD_CRITERIA["max-prob"].never] * 3
    assert all(e.fraction_leaving == 0 for e in plan.exits) and plan.quality_with == plan.quality_without


def test_chooser_errors_name_the_fault() -> None:
    heads, final, y = _noisy_heads()
    with pytest.raises(ValueError, match="unknown criterion 'confidence'"):
        F.choose_thresholds(heads, final, "confidence", 0.5)
    with pytest.raises(ValueError, match="every head must have the final output's shape"):
        F.choose_thresholds([h[:, :2] for h in heads], final, "max-prob", 0.5, "agreement")
    with pytest.raises(ValueError, match="quality=accuracy needs labels"):
        F.choose_thresholds(heads, final, "max-prob", 0.5, "accuracy")
