"""Figure helpers shared by the stages' reports: log axes whose ticks read as plain numbers.

Matplotlib labels a log axis in mathtext (``10^5``, ``3×10^0``); a reader of the study's figures wants ``100k`` or
``3``. :func:`plain_log_axis` puts one axis of a matplotlib ``Axes`` on a log scale and keeps matplotlib's choice of
which ticks get a label, only writing each label as a plain number::

    from swallowlib.plotting import plain_log_axis

    fig, ax = plt.subplots()
    ax.plot(tokens, bits_per_byte)
    plain_log_axis(ax, "x")     # instead of ax.set_xscale("log")
"""

from __future__ import annotations

from matplotlib.ticker import LogFormatter

#: Suffixes for large values, largest first (tokens and FLOPs run to billions and beyond).
_SUFFIXES = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k"))


def plain_number(x: float) -> str:
    """``x`` as a short plain label: ``0.5``, ``2``, ``30``, ``100k``, ``1.5M``, ``2B``.

    >>> [plain_number(x) for x in (0.05, 0.5, 1, 3, 20, 100_000, 1_500_000, 2e9)]
    ['0.05', '0.5', '1', '3', '20', '100k', '1.5M', '2B']
    """
    for scale, suffix in _SUFFIXES:
        if abs(x) >= scale:
            return f"{x / scale:g}{suffix}"
    return f"{x:g}"


class PlainLogFormatter(LogFormatter):
    """Matplotlib's log-axis labelling (which ticks are labelled: decades, and the minor ticks when the axis spans
    too little for decades alone), each label written by :func:`plain_number`."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        # the parent returns "" for a tick it leaves unlabelled; only its text is replaced
        return plain_number(x) if super().__call__(x, pos) else ""


def plain_log_axis(ax, axis: str = "y") -> None:
    """Put ``axis`` ("x" or "y") of ``ax`` on a log scale labelled with plain numbers.

    It sets the scale itself: setting a scale afterwards (``set_yscale``) would restore matplotlib's labels.
    """
    if axis not in ("x", "y"):
        raise ValueError(f"axis must be 'x' or 'y', not {axis!r}")
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_formatter(PlainLogFormatter())
    # labelOnlyBase=False as matplotlib's own minor formatter: minor ticks get labels on a short axis
    target.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False))
