"""Early-exit heads and thresholds fitted from data: linear probes on pooled activations, thresholds within a budget.

Heads: a linear probe on an intermediate activation, pooled to one row per input (`pool_rows`), fitted in
closed form (ridge least squares onto one-hot labels with a fitted softmax temperature, or onto the final
embedding for regression heads) or, as an option, by scikit-learn's LogisticRegression.

Thresholds: `choose_thresholds` walks the exits in order and gives each the lowest threshold (the most
inputs leaving) that keeps the quality over all calibration inputs within `budget` of the model without
exits. The budget is spent evenly: after exit k at most (k + 1) / n of it is used, whatever earlier exits
left unspent carries forward. A row leaves at the first exit whose criterion it meets (`criterion_scores`
mirrors the `exit` op); the quality is accuracy against labels, agreement with the final arg-max, or the
cosine to the final embedding, each a mean over rows, so leaving rows change it one by one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np

from ..backends.reference.exits import CRITERION_RULES, row_softmax

RIDGE_L2 = 1e-2
"""Default ridge penalty, relative to the mean squared feature (scale free)."""

TEMPERATURES = np.geomspace(0.25, 64.0, 49)
"""Softmax temperatures (logit multipliers) tried when calibrating a ridge classifier's outputs."""


class Quality(str, Enum):
    """What the threshold chooser holds within the budget."""

    ACCURACY = "accuracy"     # arg-max equals the label
    AGREEMENT = "agreement"   # arg-max equals the final output's arg-max
    COSINE = "cosine"         # cosine of the output row to the final output row (regression heads)


BUDGET_UNIT = {Quality.ACCURACY: 100.0, Quality.AGREEMENT: 100.0, Quality.COSINE: 1.0}
"""The budget is in percentage points for accuracy and agreement, in cosine for cosine: quality = budget / unit."""


# ---- pooling and heads --------------------------------------------------------------------------
def pool_rows(x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """One feature row per input: [B, F] as is, [B, S, E] mean over S (masked when `mask` [B, S] is given),
    [B, C, H, W] mean over H and W; float64."""
    x = np.asarray(x, np.float64)
    if x.ndim == 2:
        return x
    if x.ndim == 3:
        if mask is None:
            return x.mean(axis=1)
        m = np.asarray(mask, np.float64)[:, :, None]
        return (x * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1.0)
    if x.ndim == 4:
        return x.mean(axis=(2, 3))
    raise ValueError(f"pool_rows: cannot pool an activation of shape {x.shape} (expected 2, 3 or 4 dimensions)")


HEAD_BOUND = 40.0
"""Heads are clipped to [-HEAD_BOUND, HEAD_BOUND]: logits 80 apart still leave every f32 softmax value > 0 (for up
to ~1500 values per row), so an entropy of 0 (a one-hot softmax) is out of a head's reach and `entropy <= 0`
never fires; fitted heads stay far inside the bound."""


@dataclass(frozen=True)
class LinearHead:
    """A probe y = clip(features @ weight.T + bias, +-HEAD_BOUND): weight [C, F] and bias [C], float32, as the IR
    `linear` takes them."""

    weight: np.ndarray
    bias: np.ndarray

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """The head's outputs [B, C] for pooled features [B, F], in float32 like the graph computes them."""
        y = np.asarray(features, np.float32) @ self.weight.T + self.bias
        return np.clip(y, np.float32(-HEAD_BOUND), np.float32(HEAD_BOUND))


def one_hot(labels: np.ndarray, classes: int) -> np.ndarray:
    """[N, classes] float64 one-hot rows of integer labels; an error names a label out of range."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"one_hot: labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"one_hot: labels must lie in [0, {classes}), got [{labels.min()}, {labels.max()}]")
    return np.eye(classes)[labels]


def _ridge(features: np.ndarray, targets: np.ndarray, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form ridge (bias not penalized): returns weight [T, F], bias [T]."""
    x = np.asarray(features, np.float64)
    mu_x, mu_y = x.mean(axis=0), targets.mean(axis=0)
    xc, yc = x - mu_x, targets - mu_y
    scale = max(float(np.mean(xc * xc)), 1e-12) * len(x)
    w = np.linalg.solve(xc.T @ xc + l2 * scale * np.eye(x.shape[1]), xc.T @ yc)
    return w.T, mu_y - mu_x @ w


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def fit_ridge_classifier(features: np.ndarray, labels: np.ndarray, classes: int, l2: float = RIDGE_L2,
                         held_out: tuple[np.ndarray, np.ndarray] | None = None) -> LinearHead:
    """Ridge least squares onto one-hot labels, its outputs scaled by the temperature of least cross-entropy
    on `held_out` (features, labels) when given, else on the same rows, so that softmax(head) is a calibrated
    probability the max-prob, entropy and margin criteria can read. The temperature keeps every logit of
    these rows within half of HEAD_BOUND, so the clip does not change them."""
    w, b = _ridge(features, one_hot(labels, classes), l2)
    tx, ty = held_out if held_out is not None else (features, labels)
    z = np.asarray(tx, np.float64) @ w.T + b
    rows = np.arange(len(z))
    top = max(float(np.abs(z).max()), float(np.abs(np.asarray(features, np.float64) @ w.T + b).max()), 1e-12)
    temps = [t for t in TEMPERATURES if t * top <= HEAD_BOUND / 2] or [HEAD_BOUND / 2 / top]
    nll = [-float(np.mean(_log_softmax(t * z)[rows, ty])) for t in temps]
    t = float(temps[int(np.argmin(nll))])
    return LinearHead((t * w).astype(np.float32), (t * b).astype(np.float32))


def fit_ridge_regression(features: np.ndarray, targets: np.ndarray, l2: float = RIDGE_L2) -> LinearHead:
    """Ridge least squares of `targets` [N, D] (e.g. the final embedding) on `features` [N, F]."""
    w, b = _ridge(features, np.asarray(targets, np.float64), l2)
    return LinearHead(w.astype(np.float32), b.astype(np.float32))


def fit_logistic_classifier(features: np.ndarray, labels: np.ndarray, classes: int, c: float = 1.0) -> LinearHead:
    """Multinomial logistic regression (scikit-learn, lbfgs, inverse regularization `c`) as a linear head."""
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        raise ImportError("method=logistic needs scikit-learn (the 'models' extra: "
                          "pip install 'tensorsmith[models]')") from None
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        raise ValueError("fit_logistic_classifier: the labels hold a single class; logistic regression needs two")
    est = LogisticRegression(C=c, max_iter=1000).fit(np.asarray(features, np.float64), labels)
    w = np.zeros((classes, est.coef_.shape[1]))
    b = np.full(classes, -1e4)  # classes absent from the labels never win
    if est.coef_.shape[0] == 1:  # two classes: one logit for the second, zero for the first
        w[est.classes_[1]], b[est.classes_[1]], b[est.classes_[0]] = est.coef_[0], est.intercept_[0], 0.0
    else:
        w[est.classes_], b[est.classes_] = est.coef_, est.intercept_
    return LinearHead(w.astype(np.float32), b.astype(np.float32))


HEAD_FITTERS = ("ridge", "logistic")
"""Ways to fit a classifier head (regression heads are always ridge)."""


def fit_classifier(features: np.ndarray, labels: np.ndarray, classes: int, method: str = "ridge",
                   held_out: tuple[np.ndarray, np.ndarray] | None = None) -> LinearHead:
    """A classifier head by `method` (one of HEAD_FITTERS); ridge takes its temperature from `held_out`."""
    if method == "ridge":
        return fit_ridge_classifier(features, labels, classes, held_out=held_out)
    if method == "logistic":
        return fit_logistic_classifier(features, labels, classes)
    raise ValueError(f"fit_classifier: method {method!r} is not one of {', '.join(HEAD_FITTERS)}")


# ---- criteria (numpy mirror of the `exit` op) ---------------------------------------------------
def _probs(head: np.ndarray) -> np.ndarray:
    """The exit op's softmax: per row in f64, rounded to f32."""
    return row_softmax(np.asarray(head, np.float32))


def _max_prob(head: np.ndarray, earlier: Sequence[np.ndarray]) -> np.ndarray:
    return _probs(head).max(axis=1)  # f32, compared with f32(threshold) as the op does


def _entropy(head: np.ndarray, earlier: Sequence[np.ndarray]) -> np.ndarray:
    p = _probs(head).astype(np.float64)
    return -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=1)


def _margin(head: np.ndarray, earlier: Sequence[np.ndarray]) -> np.ndarray:
    p = np.sort(_probs(head), axis=1)
    return p[:, -1].astype(np.float64) - p[:, -2]


def _cosine_to_previous(head: np.ndarray, earlier: Sequence[np.ndarray]) -> np.ndarray:
    if not earlier:
        return np.full(len(head), -np.inf)  # the first exit has nothing to agree with
    return row_cosines(np.asarray(head, np.float32), np.asarray(earlier[-1], np.float32))


@dataclass(frozen=True)
class CriterionRule:
    """How a threshold criterion scores rows: the score, whether a row fires at score >= threshold (else <=),
    and a threshold no row can meet."""

    score: Callable[[np.ndarray, Sequence[np.ndarray]], np.ndarray]
    fires_above: bool
    never: float


THRESHOLD_CRITERIA: dict[str, CriterionRule] = {
    "max-prob": CriterionRule(_max_prob, True, 2.0),
    "entropy": CriterionRule(_entropy, False, -1.0),
    "margin": CriterionRule(_margin, True, 2.0),
    "cosine": CriterionRule(_cosine_to_previous, True, 2.0),
}
"""The criteria with a threshold; "patience" counts agreeing arg-maxes instead."""

PATIENCE = "patience"
CRITERIA = (*THRESHOLD_CRITERIA, PATIENCE)
"""Every criterion of the `exit` op."""


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two [B, D] arrays in f64, 0 for a zero row (the exit op's arithmetic)."""
    a, b = np.asarray(a).astype(np.float64), np.asarray(b).astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(norms > 0, (a * b).sum(axis=1) / np.where(norms > 0, norms, 1.0), 0.0)


def patience_fires(heads: Sequence[np.ndarray], index: int, patience: int) -> np.ndarray:
    """bool[B]: exit `index` fires when its arg-max and those of the `patience - 1` exits before it all agree."""
    if patience < 1:
        raise ValueError(f"patience_fires: patience must be >= 1, got {patience}")
    if index + 1 < patience:
        return np.zeros(len(heads[index]), bool)
    arg = np.argmax(heads[index], axis=1)
    agree = np.ones(len(arg), bool)
    for h in heads[index - patience + 1 : index]:
        agree &= np.argmax(h, axis=1) == arg
    return agree


def criterion_scores(criterion: str, heads: Sequence[np.ndarray], index: int) -> np.ndarray:
    """Scores of exit `index` under a threshold criterion (rows fire past the threshold, see CriterionRule)."""
    if criterion not in THRESHOLD_CRITERIA:
        raise ValueError(f"criterion_scores: {criterion!r} has no threshold; threshold criteria: "
                         f"{', '.join(THRESHOLD_CRITERIA)}")
    return THRESHOLD_CRITERIA[criterion].score(heads[index], heads[:index])


def fires(criterion: str, heads: Sequence[np.ndarray], index: int, threshold: float, patience: int = 1) -> np.ndarray:
    """bool[B]: the rows exit `index` lets leave under `criterion`, by the exit op's reference rule."""
    if criterion == PATIENCE:
        return patience_fires(heads, index, patience)
    if criterion not in THRESHOLD_CRITERIA:
        raise ValueError(f"fires: unknown criterion {criterion!r}; criteria: {', '.join(CRITERIA)}")
    if criterion == "cosine" and index == 0:
        return np.zeros(len(heads[0]), bool)
    f32 = [np.asarray(h, np.float32) for h in heads[: index + 1]]
    return np.asarray(CRITERION_RULES[criterion](f32[index], f32[:index], float(threshold), 1), bool)


def taken_exits(fire: Sequence[np.ndarray]) -> np.ndarray:
    """i32[B]: the first exit each row fires at, len(fire) for rows that run to the end."""
    n = len(fire)
    if n == 0:
        raise ValueError("taken_exits: no exits")
    stacked = np.stack([np.asarray(f, bool) for f in fire])
    return np.where(stacked.any(axis=0), np.argmax(stacked, axis=0), n).astype(np.int32)


def select_rows(final: np.ndarray, heads: Sequence[np.ndarray], taken: np.ndarray) -> np.ndarray:
    """Each row from the head it left at (or `final`): what the `exit_select` op computes."""
    out = np.array(final, copy=True)
    for k, h in enumerate(heads):
        out[taken == k] = h[taken == k]
    return out


# ---- quality and threshold choice ---------------------------------------------------------------
def row_quality(quality: Quality, out: np.ndarray, final: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
    """Per-row quality of `out` [B, C]: 1/0 for a correct (agreeing) arg-max, or the cosine to `final`."""
    if quality is Quality.COSINE:
        return row_cosines(out, final)
    if quality is Quality.ACCURACY:
        if labels is None:
            raise ValueError("quality=accuracy needs labels")
        return (np.argmax(out, axis=1) == np.asarray(labels)).astype(np.float64)
    return (np.argmax(out, axis=1) == np.argmax(final, axis=1)).astype(np.float64)


@dataclass(frozen=True)
class ExitChoice:
    """One exit's chosen threshold and what it does on the calibration data."""

    index: int
    threshold: float
    fraction_leaving: float    # of all inputs
    exit_probability: float    # of the inputs that reach this exit (what the cost model reads)
    quality_of_leaving: float  # accuracy / agreement / mean cosine of the rows that leave here (nan: none)


@dataclass(frozen=True)
class ExitPlan:
    """Thresholds for every exit and the quality with and without exits on the calibration data."""

    criterion: str
    quality: Quality
    budget: float
    patience: int
    exits: tuple[ExitChoice, ...]
    quality_without: float
    quality_with: float

    @property
    def thresholds(self) -> list[float]:
        """The threshold of each exit, in order."""
        return [e.threshold for e in self.exits]

    def report(self) -> str:
        """One line per exit (threshold, fraction leaving, quality of those leaving) and the totals."""
        q = self.quality.value
        rule = THRESHOLD_CRITERIA.get(self.criterion)
        lines = []
        for e in self.exits:
            thr = "none" if rule is not None and e.threshold == rule.never else f"{e.threshold:.4g}"
            left = "-" if np.isnan(e.quality_of_leaving) else f"{e.quality_of_leaving:.4f}"
            lines.append(f"exit {e.index}: threshold {thr}, leaving {e.fraction_leaving:.1%} of inputs "
                         f"({e.exit_probability:.1%} of those reaching it), {q} of those leaving {left}")
        lines.append(f"{q} {self.quality_with:.4f} with exits vs {self.quality_without:.4f} without "
                     f"(budget {self.budget:g}, criterion {self.criterion}"
                     + (f", patience {self.patience})" if self.criterion == PATIENCE else ")"))
        return "\n".join(lines)


def evaluate_thresholds(heads: Sequence[np.ndarray], final: np.ndarray, criterion: str, thresholds: Sequence[float],
                        quality: Quality | str = Quality.ACCURACY, labels: np.ndarray | None = None,
                        patience: int = 1, budget: float = 0.0) -> ExitPlan:
    """The plan for given thresholds: cascade the exits and measure on the calibration rows."""
    quality = Quality(quality)
    fire = [fires(criterion, heads, k, t, patience) for k, t in enumerate(thresholds)]
    taken = taken_exits(fire)
    out = select_rows(final, heads, taken)
    n = len(final)
    choices = []
    for k, t in enumerate(thresholds):
        left = taken == k
        reached = int(np.sum(taken >= k))
        q = float(np.mean(row_quality(quality, out[left], final[left], None if labels is None else labels[left])))\
            if left.any() else float("nan")
        choices.append(ExitChoice(k, float(t), float(left.sum() / n), float(left.sum() / reached) if reached else 0.0,
                                  q))
    base = float(np.mean(row_quality(quality, final, final, labels)))
    with_exits = float(np.mean(row_quality(quality, out, final, labels)))
    return ExitPlan(criterion, quality, budget, patience, tuple(choices), base, with_exits)


def _lowest_threshold(scores: np.ndarray, gain: np.ndarray, rule: CriterionRule, allowed_loss: float) -> float:
    """The threshold letting the most rows leave whose summed quality change stays >= -allowed_loss."""
    conf = scores if rule.fires_above else -scores
    finite = np.isfinite(conf)
    if not finite.any():
        return rule.never
    conf, gain = conf[finite], gain[finite]
    order = np.argsort(-conf, kind="stable")
    conf, cum = conf[order], np.cumsum(gain[order])
    last_of_group = np.r_[conf[1:] != conf[:-1], True]  # rows with equal scores leave together
    ok = last_of_group & (cum >= -allowed_loss - 1e-12)
    if not ok.any():
        return rule.never
    c = float(conf[np.nonzero(ok)[0][-1]])  # the score itself: the op compares the same arithmetic exactly
    return c if rule.fires_above else -c


def choose_thresholds(heads: Sequence[np.ndarray], final: np.ndarray, criterion: str, budget: float,
                      quality: Quality | str = Quality.ACCURACY, labels: np.ndarray | None = None,
                      patience: int = 0) -> ExitPlan:
    """Thresholds for exits with outputs `heads` (in order) so that quality over all rows stays within `budget`
    (points for accuracy / agreement, cosine for cosine) of `final`'s; with criterion=patience, the smallest
    patience (1 <= p <= number of exits, or never firing) within budget, unless `patience` > 0 fixes it."""
    quality = Quality(quality)
    if criterion not in CRITERIA:
        raise ValueError(f"choose_thresholds: unknown criterion {criterion!r}; criteria: {', '.join(CRITERIA)}")
    if not heads:
        raise ValueError("choose_thresholds: no exits")
    if budget < 0:
        raise ValueError(f"choose_thresholds: budget must be >= 0, got {budget}")
    n_rows = len(final)
    if any(h.shape != final.shape for h in heads):
        raise ValueError(f"choose_thresholds: every head must have the final output's shape {final.shape}, got "
                         f"{[h.shape for h in heads]}")
    if labels is not None and len(labels) != n_rows:
        raise ValueError(f"choose_thresholds: {len(labels)} labels for {n_rows} rows")
    allowed = budget / BUDGET_UNIT[quality] * n_rows  # in summed per-row quality
    base_rows = row_quality(quality, final, final, labels)
    n = len(heads)
    if criterion == PATIENCE:
        candidates = [patience] if patience > 0 else list(range(1, n + 2))
        for p in candidates:
            plan = evaluate_thresholds(heads, final, criterion, [0.0] * n, quality, labels, p, budget)
            if (plan.quality_without - plan.quality_with) * n_rows <= allowed + 1e-9 or p == candidates[-1]:
                return plan
    rule = THRESHOLD_CRITERIA[criterion]
    thresholds = [rule.never] * n
    reaching = np.ones(n_rows, bool)
    spent = 0.0
    for k in range(n):
        gain = row_quality(quality, heads[k], final, labels) - base_rows
        scores = criterion_scores(criterion, heads, k)
        scores = np.where(reaching, scores, np.inf if not rule.fires_above else -np.inf)
        thresholds[k] = _lowest_threshold(scores, np.where(reaching, gain, 0.0), rule,
                                          allowed * (k + 1) / n - spent)
        fired = fires(criterion, heads, k, thresholds[k]) & reaching
        spent -= float(np.sum(gain[fired]))
        reaching &= ~fired
    return evaluate_thresholds(heads, final, criterion, thresholds, quality, labels, 1, budget)
