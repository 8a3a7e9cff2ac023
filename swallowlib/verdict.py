"""The decision rules of the findings table (stage 06): one framework, the same rule for the same kind of claim.

Every comparison is an :class:`Estimate`: a difference ``d`` between two measurements in the claim's unit, and the
half-width ``h`` of the interval ``[d - h, d + h]`` a verdict reads — ``z`` standard errors (config
``analysis.z``, 2 ≈ a two-sided 95 % interval), widened to Student's t when the spread between seeds is part of
the error (:func:`over_seeds`). A verdict is one of ``holds``, ``does not hold``, ``inconclusive`` or
``not measured`` (the inputs are missing; the reason says which). Three kinds of claim:

*superiority* ("improves", "beats", "is cheaper") — :func:`superiority`
    holds when the whole interval lies on the claimed side of 0, does not hold when it lies wholly on the other
    side, is inconclusive otherwise.
*non-inferiority* ("is retained", "without hurting", "costs little") — :func:`non_inferiority`
    the claim is that the change does not make things worse by more than a margin ``m``: holds when the upper end
    of the interval of the harm is below ``m``; does not hold when its lower end is above ``m``; inconclusive
    otherwise. A large *improvement* also passes: that is what the test asks, and the table says so.
*equivalence* ("≈", "intact") — :func:`equivalence`
    both one-sided tests (TOST): holds when the whole interval lies within ``±m``; does not hold when it lies
    wholly outside; inconclusive otherwise.

Margins are relative to the reference measurement (a fraction of its value) and live in the config
(``analysis:``) beside the reason for their size.

Worked example — English bits per byte, base 2.000 → CPT 2.036 (d = +0.036, paired stderr 0.004, z = 2), the
claim "English is retained" with margin 5 %: relative harm 0.036 / 2.000 = 1.8 %, half-width 2 × 0.004 / 2.000 =
0.4 %, interval [1.4 %, 2.2 %]. Non-inferiority: 2.2 % < 5 % → holds, although the rise itself is significant
(superiority of the base would also hold: 1.4 % > 0). With d = +0.110 (5.5 % ± 0.4 %) the lower end 5.1 % > 5 %
→ does not hold; with d = +0.098 (4.9 % ± 0.4 %) the interval [4.5 %, 5.3 %] straddles the margin → inconclusive.

>>> superiority(Estimate(-0.1, 0.05), lower_is_better=True)[0]
'holds'
>>> non_inferiority(Estimate(0.036, 0.008), margin=0.1)[0]
'holds'
>>> equivalence(Estimate(0.02, 0.01), margin=0.02)[0]
'inconclusive'
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

HOLDS, FAILS, INCONCLUSIVE, NOT_MEASURED = "holds", "does not hold", "inconclusive", "not measured"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, NOT_MEASURED)


@dataclass(frozen=True)
class Estimate:
    """A difference ``d`` and the half-width ``h`` of its interval; ``basis`` says where ``h`` comes from."""

    d: float
    h: float
    basis: str = ""

    @property
    def lo(self) -> float:
        return self.d - self.h

    @property
    def hi(self) -> float:
        return self.d + self.h

    def scaled(self, by: float) -> Estimate:
        """The same estimate in another unit (e.g. relative to a reference: ``by = 1 / reference``)."""
        return Estimate(self.d * by, self.h * abs(by), self.basis)

    def text(self, pct: bool = False) -> str:
        f = (lambda x: f"{x:+.1%}") if pct else (lambda x: f"{x:+.3f}")
        h = f"{self.h:.1%}" if pct else f"{self.h:.3f}"
        return f"Δ {f(self.d)} ± {h}" + (f" ({self.basis})" if self.basis else "")


def from_stderr(d: float, se: float, z: float, basis: str) -> Estimate:
    """``d ± z·se``; a missing ``se`` (NaN) is the caller's to handle (:func:`without_stderr`)."""
    return Estimate(d, z * se, f"{z:g} × {basis}")


def without_stderr(d: float, reference: float, floor: float, basis: str = "no stderr") -> Estimate:
    """A measurement without any standard error: the interval is ``±floor`` of the reference value (stated)."""
    return Estimate(d, floor * abs(reference), f"{basis}: ±{floor:.0%} of the value assumed")


def exact(d: float, basis: str = "exact count") -> Estimate:
    """A deterministic quantity (counts on fixed texts): no sampling error."""
    return Estimate(d, 0.0, basis)


def over_seeds(per_seed: list[Estimate], z: float, unit: str = "seed") -> Estimate:
    """Combine one estimate per seed (or per other replicate, named by ``unit``: e.g. "round" for interleaved timing
    rounds): the mean difference, with an error that includes the spread between them.

    ``se² = s²/n + mean(se_i²)/n`` (s = standard deviation of the seeds' differences, se_i = each seed's own
    error recovered from its half-width) — conservative, as ``s`` already holds some of the within-seed noise — and
    the multiplier is Student's t with ``n - 1`` degrees of freedom (12.7 for two seeds), never below ``z``.
    One seed returns its estimate unchanged.

    >>> e = over_seeds([Estimate(-0.10, 0.0), Estimate(-0.12, 0.0)], z=2)
    >>> round(e.d, 3), round(e.h, 3)  # s = 0.01414, se = 0.01, t(0.975, 1) = 12.71
    (-0.11, 0.127)
    """
    n = len(per_seed)
    if n == 0:
        raise ValueError("over_seeds needs at least one estimate")
    if n == 1:
        return per_seed[0]
    ds = np.array([e.d for e in per_seed])
    within = np.array([e.h / z for e in per_seed])
    se = math.sqrt(ds.var(ddof=1) / n + float((within**2).mean()) / n)
    k = max(z, float(stats.t.ppf(0.975, n - 1)))
    return Estimate(float(ds.mean()), k * se, f"{n} {unit}s, t({n - 1}) × stderr incl. the {unit} spread")


def superiority(e: Estimate, lower_is_better: bool) -> tuple[str, str]:
    """Is the change (``d``) on the better side of 0 beyond its interval?"""
    better = e.hi < 0 if lower_is_better else e.lo > 0
    worse = e.lo > 0 if lower_is_better else e.hi < 0
    if better:
        return HOLDS, f"{e.text()}: the claimed direction, beyond the interval"
    if worse:
        return FAILS, f"{e.text()}: the opposite direction, beyond the interval"
    return INCONCLUSIVE, f"{e.text()}: the interval includes 0"


def non_inferiority(e: Estimate, margin: float, lower_is_better: bool = True) -> tuple[str, str]:
    """Is the harm (``d`` when lower is better, ``-d`` otherwise) below ``margin``, interval included?

    ``e`` and ``margin`` must be in the same unit (relative estimates use :meth:`Estimate.scaled`).
    """
    harm = e if lower_is_better else Estimate(-e.d, e.h, e.basis)
    rule = f"non-inferiority, margin {margin:.1%}"
    if harm.hi < margin:
        return HOLDS, f"harm {harm.text(pct=True)} < {margin:.1%} ({rule})"
    if harm.lo > margin:
        return FAILS, f"harm {harm.text(pct=True)} > {margin:.1%} ({rule})"
    return INCONCLUSIVE, f"harm {harm.text(pct=True)} straddles {margin:.1%} ({rule})"


def equivalence(e: Estimate, margin: float) -> tuple[str, str]:
    """Is the whole interval within ``±margin`` (two one-sided tests)?"""
    rule = f"equivalence, margin ±{margin:.1%}"
    if -margin < e.lo and e.hi < margin:
        return HOLDS, f"{e.text(pct=True)} within ±{margin:.1%} ({rule})"
    if e.lo > margin or e.hi < -margin:
        return FAILS, f"{e.text(pct=True)} outside ±{margin:.1%} ({rule})"
    return INCONCLUSIVE, f"{e.text(pct=True)} straddles ±{margin:.1%} ({rule})"


def all_of(verdicts: list[str]) -> str:
    """A claim that needs every part: fails if any part fails, holds if all hold, else inconclusive."""
    if not verdicts or NOT_MEASURED in verdicts:
        return NOT_MEASURED
    if FAILS in verdicts:
        return FAILS
    return HOLDS if all(v == HOLDS for v in verdicts) else INCONCLUSIVE
