"""The findings table's decision rules: known answers derived by hand, at and around each boundary."""

import pytest

from swallowlib import verdict as v
from swallowlib.verdict import FAILS, HOLDS, INCONCLUSIVE, NOT_MEASURED, Estimate


def test_superiority_reads_the_interval_in_the_claimed_direction():
    assert v.superiority(Estimate(-0.10, 0.05), lower_is_better=True)[0] == HOLDS  # [-0.15, -0.05] < 0
    assert v.superiority(Estimate(-0.10, 0.15), lower_is_better=True)[0] == INCONCLUSIVE  # [-0.25, 0.05]
    assert v.superiority(Estimate(+0.10, 0.05), lower_is_better=True)[0] == FAILS
    assert v.superiority(Estimate(+0.10, 0.05), lower_is_better=False)[0] == HOLDS


def test_non_inferiority_passes_a_significant_small_harm_and_an_improvement():
    # English +1.8 % ± 0.4 %: significant (superiority of the base would hold) yet within a 5 % margin
    assert v.non_inferiority(Estimate(0.018, 0.004), 0.05)[0] == HOLDS
    assert v.non_inferiority(Estimate(-0.35, 0.02), 0.03)[0] == HOLDS  # VE 35 % better: non-inferior, not "≈"
    assert v.non_inferiority(Estimate(0.049, 0.004), 0.05)[0] == INCONCLUSIVE  # [4.5 %, 5.3 %] straddles 5 %
    assert v.non_inferiority(Estimate(0.055, 0.004), 0.05)[0] == FAILS  # lower end 5.1 % > 5 %
    # higher is better: a fall in score is the harm
    assert v.non_inferiority(Estimate(-0.055, 0.004), 0.05, lower_is_better=False)[0] == FAILS


def test_equivalence_is_two_sided():
    assert v.equivalence(Estimate(0.005, 0.01), 0.03)[0] == HOLDS
    assert v.equivalence(Estimate(-0.35, 0.02), 0.03)[0] == FAILS  # the improvement that non-inferiority passes
    assert v.equivalence(Estimate(0.025, 0.01), 0.03)[0] == INCONCLUSIVE


def test_over_seeds_uses_the_seed_spread_and_student_t():
    # two seeds: d = -0.10, -0.12 -> mean -0.11; s = 0.01414, se = s / sqrt(2) = 0.01; t(0.975, 1) = 12.706
    e = v.over_seeds([Estimate(-0.10, 0.0), Estimate(-0.12, 0.0)], z=2)
    assert e.d == pytest.approx(-0.11) and e.h == pytest.approx(12.706 * 0.01, rel=1e-3)
    # each seed's own error (h = z * se_i = 2 * 0.05) adds: se^2 = 0.01^2 + 0.05^2 / 2
    e2 = v.over_seeds([Estimate(-0.10, 0.1), Estimate(-0.12, 0.1)], z=2)
    assert e2.h == pytest.approx(12.706 * (0.01**2 + 0.05**2 / 2) ** 0.5, rel=1e-3)
    one = Estimate(-0.1, 0.02, "x")
    assert v.over_seeds([one], z=2) is one
    with pytest.raises(ValueError):
        v.over_seeds([], z=2)


def test_without_stderr_states_its_assumed_interval_and_scaling():
    e = v.without_stderr(0.5, 2.0, 0.01)
    assert e.h == pytest.approx(0.02) and "±1%" in e.basis
    r = Estimate(0.036, 0.008).scaled(1 / 2.0)
    assert (r.d, r.h) == pytest.approx((0.018, 0.004))


def test_all_of():
    assert v.all_of([HOLDS, HOLDS]) == HOLDS
    assert v.all_of([HOLDS, INCONCLUSIVE]) == INCONCLUSIVE
    assert v.all_of([INCONCLUSIVE, FAILS]) == FAILS
    assert v.all_of([HOLDS, NOT_MEASURED]) == NOT_MEASURED
