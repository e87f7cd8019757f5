"""Style control: features of an answer, and the contextual fit against plain scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import expit, log_expit

from evalcore.errors import InvalidInputError, InvalidParameterError, InvalidRecordError
from evalcore.ratings import BattleTable, RatingParams, rate_battles
from evalcore.ratings.style import STYLE_FEATURES, fit_style, style_design, style_features
from tests.evalcore.ratings.synthetic import model_names

WINNERS = np.array(["model_a", "model_b", "tie", "tie (bothbad)"])
SCORE = np.array([1.0, 0.0, 0.5, 0.5])
SCALE = 400 / np.log(10)


def test_style_features_count_tokens_headers_bold_and_list_items():
    text = (
        "# Title\n\nSome **bold** text and __more__.\n\n"
        "## Steps\n- one\n- two\n  * nested\n1. first\n2) second\n\n"
        "```python\n# not a header\n- not a list\n```\n"
        "#not-a-header **unclosed\n"
    )
    features = style_features(text)
    assert set(features) == set(STYLE_FEATURES)
    assert features["headers"] == 2
    assert features["bold"] == 2
    assert features["lists"] == 5
    assert features["tokens"] > 30
    assert style_features("") == {"tokens": 0, "headers": 0, "bold": 0, "lists": 0}
    assert style_features("Hello, world!")["tokens"] == 4


def test_style_features_refuse_non_text():
    with pytest.raises(TypeError):
        style_features(None)  # type: ignore[arg-type]


def test_style_design_is_a_standardised_ratio_with_zero_for_empty_sides():
    style = np.array(
        [
            [[10, 0, 0, 2], [30, 0, 0, 0]],
            [[30, 1, 0, 0], [10, 0, 0, 0]],
            [[20, 0, 0, 0], [20, 0, 0, 0]],
        ],
        dtype=float,
    )
    design = style_design(style)
    ratio = np.array([-0.5, 0.5, 0.0])
    np.testing.assert_allclose(design[:, 0], (ratio - ratio.mean()) / ratio.std())
    np.testing.assert_allclose(design[:, 2], 0.0)  # a constant feature stays 0
    np.testing.assert_allclose(design.mean(axis=0), 0.0, atol=1e-12)


def _styled_votes(m: int, n: int, seed: int) -> tuple[np.ndarray, ...]:
    """Votes where longer answers win more often, beyond the models' strengths."""
    rng = np.random.default_rng(seed)
    strengths = np.linspace(-0.6, 0.6, m)
    a = rng.integers(0, m, n)
    b = (a + rng.integers(1, m, n)) % m
    # Stronger models also write longer answers, so ignoring style would overrate them.
    length = rng.poisson(200 * np.exp(0.5 * strengths)[:, None] * np.ones(2), (m, 2))
    style = rng.poisson(
        np.stack([length[a, 0], length[b, 1]], axis=1)[:, :, None] * [1.0, 0.01, 0.02, 0.05]
    ).astype(float)
    z = style_design(style)
    eta = strengths[a] - strengths[b] + z @ np.array([0.4, 0.05, 0.0, 0.1])
    u = rng.random(n)
    p = expit(eta)
    outcome = np.select([u < 0.85 * p, u < 0.85, u < 0.95], [0, 1, 2], default=3)
    return a, b, outcome, style


def _expanded_reference(a, b, outcome, z, m, penalty, weights):
    """Plain scipy minimisation of the penalised likelihood, one row per vote."""
    y, n = SCORE[outcome], a.size

    def loss(x: np.ndarray) -> tuple[float, np.ndarray]:
        s, gamma = x[:m], x[m:]
        eta = s[a] - s[b] + z @ gamma
        value = -(weights * (y * log_expit(eta) + (1 - y) * log_expit(-eta))).sum()
        value += 0.5 * penalty * n * gamma @ gamma
        r = weights * (expit(eta) - y)
        gradient = np.concatenate(
            [np.bincount(a, r, m) - np.bincount(b, r, m), z.T @ r + penalty * n * gamma]
        )
        return float(value), gradient

    x = minimize(loss, np.zeros(m + z.shape[1]), jac=True, method="BFGS", options={"gtol": 1e-9}).x
    return x[:m] - x[:m].mean(), x[m:]


@pytest.mark.parametrize("penalty", [1.0, 0.001])
def test_contextual_fit_matches_scipy_on_expanded_votes_within_a_hundredth_of_a_point(penalty):
    m = 6
    a, b, outcome, style = _styled_votes(m, 3_000, seed=1)
    z = style_design(style)
    weights = np.ones(a.size)
    expected_s, expected_gamma = _expanded_reference(a, b, outcome, z, m, penalty, weights)
    fit = fit_style(a, b, SCORE[outcome], z, n_models=m, penalty=penalty)
    np.testing.assert_allclose(SCALE * fit.strengths, SCALE * expected_s, atol=0.01)
    np.testing.assert_allclose(fit.coefficients, expected_gamma, atol=1e-5)


def _records(a, b, outcome, style, *, nested: bool = False) -> list[dict[str, object]]:
    names = model_names(int(max(a.max(), b.max())) + 1)
    rows: list[dict[str, object]] = []
    for i in range(a.size):
        row: dict[str, object] = {
            "model_a": names[a[i]],
            "model_b": names[b[i]],
            "winner": str(WINNERS[outcome[i]]),
        }
        sides = {
            side: dict(zip(STYLE_FEATURES, style[i, k].tolist(), strict=True))
            for k, side in enumerate("ab")
        }
        if nested:
            row["style"] = sides
        else:
            row.update({f"{f}_{side}": v for side, d in sides.items() for f, v in d.items()})
        rows.append(row)
    return rows


def test_rate_battles_with_style_control_matches_the_reference_and_reweighting_agrees():
    m = 5
    a, b, outcome, style = _styled_votes(m, 2_000, seed=2)
    params = RatingParams(style_control=True, interval="sandwich", bootstrap_rounds=0)
    result = rate_battles(_records(a, b, outcome, style), params)
    nested = rate_battles(_records(a, b, outcome, style, nested=True), params)
    assert nested.to_csv() == result.to_csv()
    expected_s, expected_gamma = _expanded_reference(
        a, b, outcome, style_design(style), m, params.style_penalty, np.ones(a.size)
    )
    for row in result.rows:
        i = model_names(m).index(row.model)
        assert row.rating == pytest.approx(1000 + SCALE * expected_s[i], abs=0.01)
        assert row.ci_lower < row.rating < row.ci_upper
    assert list(result.style_coefficients) == list(STYLE_FEATURES)
    assert result.style_coefficients["tokens"] == pytest.approx(expected_gamma[0], abs=1e-5)
    assert result.to_csv().splitlines()[1].endswith(",sandwich,false")
    weighted = rate_battles(
        _records(a, b, outcome, style),
        RatingParams(style_control=True, interval="sandwich", reweight=True, reweight_floor=1),
    )
    assert weighted.rows[0].rating != pytest.approx(result.rows[0].rating, abs=1e-6)


def test_style_control_takes_length_out_of_the_ratings():
    m = 6
    a, b, outcome, style = _styled_votes(m, 40_000, seed=3)
    records = _records(a, b, outcome, style)
    plain = rate_battles(records, RatingParams(bootstrap_rounds=0))
    styled = rate_battles(records, RatingParams(style_control=True, interval="sandwich"))
    spread = {r.rating for r in plain.rows}
    styled_spread = {r.rating for r in styled.rows}
    assert max(styled_spread) - min(styled_spread) < max(spread) - min(spread)
    # True 0.4; the 15 % ties and both-bad votes (half wins) attenuate every slope by ≈ 0.85.
    assert styled.style_coefficients["tokens"] == pytest.approx(0.85 * 0.4, abs=0.04)
    shrunk = rate_battles(
        records, RatingParams(style_control=True, interval="sandwich", style_penalty=1.0)
    )
    assert 0 < shrunk.style_coefficients["tokens"] < 0.5 * styled.style_coefficients["tokens"]


def test_style_control_needs_style_columns_and_valid_counts(battles):
    params = RatingParams(style_control=True, interval="sandwich")
    with pytest.raises(InvalidInputError, match="tokens_a"):
        rate_battles(battles, params)
    a, b, outcome, style = _styled_votes(4, 50, seed=4)
    records = _records(a, b, outcome, style)
    records[7]["bold_b"] = -1
    with pytest.raises(InvalidRecordError) as error:
        BattleTable.from_records(records)
    assert (error.value.row, error.value.field) == (7, "style")


def test_style_control_needs_the_sandwich_interval():
    with pytest.raises(InvalidParameterError) as error:
        RatingParams(style_control=True)
    assert "style_control" in error.value.fields
