"""One frame of a trench: the cheapest order-preserving assignment of tracks to cells.

In a mother-machine trench cells keep their order along the trench, so the
tracks of frame ``t - 1`` (ordered from the closed end) and the cells of frame
``t`` (ordered the same way) can be matched by dynamic programming over the two
ordered lists, like aligning two sequences: the order rule that mm3-style
rule-based trackers apply greedily, solved exactly, without a general
assignment solver. Each step consumes a
few tracks and a few cells with one of the moves below; the cost of a move is
a negative log-likelihood-like score of how well the cells fit the track's
prediction (length from exponential growth, position pushed by the growth of
the cells above it).
"""
from __future__ import annotations

import numpy as np
from numba import njit

# Moves: (tracks consumed, cells consumed)
LINK = 0      # (1, 1) the same cell
DIVIDE = 1    # (1, 2) a division into two daughters
OVERSEG = 2   # (1, 2) one cell cut in two by the segmentation
HALF_UP = 3   # (1, 1) a division whose lower daughter was missed
HALF_LOW = 4  # (1, 1) a division whose upper daughter was missed
MERGE = 5     # (2, 1) two cells fused by the segmentation (or a division undone)
MISS = 6      # (1, 0) missed this frame (gap) or lost
EXIT = 7      # (1, 0) pushed out of the open end
NEW = 8       # (0, 1) a cell without a track (first frame, spurious object)
DIV_CUT_UP = 9   # (1, 3) a division whose upper daughter is cut in two by the segmentation
DIV_CUT_LOW = 10  # (1, 3) a division whose lower daughter is cut in two

_LOG_HALF = np.log(0.5)  # a daughter's log length: her mother's plus this

MOVE_NAMES = ("link", "divide", "overseg", "half_up", "half_low", "merge", "miss", "exit", "new",
              "div_cut_up", "div_cut_low")

#: Order of the entries of the ``costs`` vector passed to :func:`assign_frame`.
COST_FIELDS = ("sigma_length", "sigma_pos", "sigma_pos_rel", "c_divide", "c_overseg",
               "c_miss", "c_new", "c_merge", "sigma_asym", "sigma_half")


def _numba_takes_nrt_option() -> bool:
    """Whether this numba accepts ``_nrt`` (an underscored option; numba 0.58-0.68 do)."""
    from numba.core import options

    return hasattr(options.DefaultOptions, "_nrt")


_HELPER_OPTIONS = {"_nrt": False} if _numba_takes_nrt_option() else {}


def _helper(fn):
    """``njit`` for the pieces of :func:`assign_frame`: they allocate nothing, so the arrays
    they read need not be reference counted (with it, the calls made assign_frame 2-3x
    slower). A numba without the option compiles them with reference counting."""
    return njit(cache=True, **_HELPER_OPTIONS)(fn)


@_helper
def _len_cost(obs, pred, trunc, sigma):
    d = obs - pred
    if trunc and d < 0.0:
        return 0.0  # a cell cut by the open end may look shorter than it is
    return (d / sigma) ** 2


@njit(cache=True)
def assign_frame(p_top, p_bot, p_logl, ready, gap, exit_cost, o_top, o_bot, o_trunc, costs,
                 edge):
    """Cheapest order-preserving assignment of ``m`` tracks to ``n`` cells.

    Parameters
    ----------
    p_top, p_bot, p_logl : float arrays (m,)
        Predicted top (closed-end side), bottom and log length of every track,
        ordered from the closed end.
    ready : float array (m,)
        Extra cost of a division (large for cells far below division size).
    gap : int array (m,)
        Frames since the track was last seen (widens the position tolerance).
    exit_cost : float array (m,)
        Cost of the track having left through the open end.
    o_top, o_bot : float arrays (n,)
        Observed cells ordered from the closed end.
    o_trunc : bool array (n,)
        The cell touches the open end (its length is a lower bound).
    costs : float array
        See :data:`COST_FIELDS`.
    edge : float
        Row of the open end: a cell whose centre passes it has left.

    Returns
    -------
    moves : int array (k, 3)
        ``(move, first track, first cell)`` in order; -1 where none is consumed.
    total : float
    """
    s_pos, s_rel, c_miss, c_new = costs[1], costs[2], costs[5], costs[6]
    m, n = p_top.shape[0], o_top.shape[0]
    inf = 1e300
    # best[i, j]: cheapest way to consume the first i tracks and j cells; move[i, j]: its last move.
    best = np.full((m + 1, n + 1), inf)
    move = np.full((m + 1, n + 1), -1, np.int64)
    best[0, 0] = 0.0
    o_logl = np.log(np.maximum(o_bot - o_top, 1.0))
    for i in range(m + 1):
        for j in range(n + 1):
            d = best[i, j]
            if d >= inf:
                continue
            if j < n:
                _relax(best, move, i, j + 1, d + c_new, NEW)
            if i == m:
                continue
            sp = (s_pos + s_rel * max(p_top[i], 0.0)) * (1.0 + gap[i])
            # Unmatched track: left through the open end, or missed.
            if exit_cost[i] < c_miss:
                _relax(best, move, i + 1, j, d + exit_cost[i], EXIT)
            else:
                _relax(best, move, i + 1, j, d + c_miss, MISS)
            if j < n:
                c, mv = _one_cell(d, i, j, sp, p_top, p_bot, p_logl, ready, o_top, o_bot, o_logl,
                                  o_trunc, costs, edge)
                _relax(best, move, i + 1, j + 1, c, mv)
            if j + 1 < n:
                c, mv = _two_cells(d, i, j, sp, p_top, p_logl, ready, o_top, o_bot, o_logl, o_trunc,
                                   costs)
                _relax(best, move, i + 1, j + 2, c, mv)
            if j + 2 < n:
                c, mv = _three_cells(d, i, j, sp, p_top, p_logl, ready, o_top, o_bot, o_trunc, costs)
                _relax(best, move, i + 1, j + 3, c, mv)
            if i + 1 < m and j < n:
                c = _merge_cost(d, i, j, sp, p_top, p_bot, o_top, o_logl, o_trunc, costs)
                _relax(best, move, i + 2, j + 1, c, MERGE)
    return _walk_back(move, m, n), best[m, n]


@_helper
def _relax(best, move, i, j, c, mv):
    """Take move ``mv`` into ``(i, j)`` if it is the cheapest way there so far."""
    if c < best[i, j]:
        best[i, j] = c
        move[i, j] = mv


@_helper
def _one_cell(d, i, j, sp, p_top, p_bot, p_logl, ready, o_top, o_bot, o_logl, o_trunc, costs, edge):
    """Cost and move of track ``i`` taking cell ``j`` alone: the same cell (``LINK``), or
    a division with one daughter missed (``HALF_UP``, ``HALF_LOW``)."""
    s_len, c_div, c_miss, s_half = costs[0], costs[3], costs[5], costs[9]
    pos = ((o_top[j] - p_top[i]) / sp) ** 2
    c = d + pos + _len_cost(o_logl[j], p_logl[i], o_trunc[j], s_len)
    mv = LINK
    # A division with one daughter missed: the cell is about half the prediction.
    # A lower daughter whose centre is past the open end has left (no miss).
    half = c_div + ready[i] + _len_cost(o_logl[j], p_logl[i] + _LOG_HALF, o_trunc[j], s_half)
    rest = np.exp(p_logl[i]) - (o_bot[j] - o_top[j])
    gone = o_bot[j] + 0.5 * rest >= edge
    c_up = d + half + pos + (0.0 if gone else c_miss)
    if c_up < c:
        c, mv = c_up, HALF_UP
    c_low = d + half + c_miss + ((o_bot[j] - p_bot[i]) / sp) ** 2
    if not o_trunc[j] and c_low < c:
        c, mv = c_low, HALF_LOW
    return c, mv


@_helper
def _two_cells(d, i, j, sp, p_top, p_logl, ready, o_top, o_bot, o_logl, o_trunc, costs):
    """Cost and move of track ``i`` taking cells ``j, j + 1``: one cell cut in two by the
    segmentation (``OVERSEG``) or a division (``DIVIDE``, costlier for unequal daughters)."""
    s_len, c_div, c_over, s_asym = costs[0], costs[3], costs[4], costs[8]
    pos = ((o_top[j] - p_top[i]) / sp) ** 2
    span = np.log(max(o_bot[j + 1] - o_top[j], 1.0))
    base = d + pos + _len_cost(span, p_logl[i], o_trunc[j + 1], s_len)
    c, mv = base + c_over, OVERSEG
    if not o_trunc[j + 1]:
        la, lb = np.exp(o_logl[j]), np.exp(o_logl[j + 1])
        asym = ((la / (la + lb) - 0.5) / s_asym) ** 2
    else:
        asym = 0.0
    c_d = base + c_div + ready[i] + asym
    if c_d < c:
        c, mv = c_d, DIVIDE
    return c, mv


@_helper
def _three_cells(d, i, j, sp, p_top, p_logl, ready, o_top, o_bot, o_trunc, costs):
    """Cost and move of track ``i`` taking cells ``j .. j + 2``: a division with one daughter
    cut in two (``DIV_CUT_UP``: the upper one, ``DIV_CUT_LOW``: the lower one)."""
    s_len, c_div, c_over, s_asym = costs[0], costs[3], costs[4], costs[8]
    pos = ((o_top[j] - p_top[i]) / sp) ** 2
    span = np.log(max(o_bot[j + 2] - o_top[j], 1.0))
    base = d + pos + _len_cost(span, p_logl[i], o_trunc[j + 2], s_len) + c_div + c_over + ready[i]
    c, mv = 1e300, DIV_CUT_UP
    for up in range(2):
        la = (o_bot[j + 1] if up == 0 else o_bot[j]) - o_top[j]
        lb = o_bot[j + 2] - (o_top[j + 2] if up == 0 else o_top[j + 1])
        asym = 0.0 if o_trunc[j + 2] else ((la / (la + lb) - 0.5) / s_asym) ** 2
        if base + asym < c:
            c, mv = base + asym, (DIV_CUT_UP if up == 0 else DIV_CUT_LOW)
    return c, mv


@_helper
def _merge_cost(d, i, j, sp, p_top, p_bot, o_top, o_logl, o_trunc, costs):
    """Cost of tracks ``i, i + 1`` sharing cell ``j`` (``MERGE``)."""
    s_len, c_merge = costs[0], costs[7]
    pos = ((o_top[j] - p_top[i]) / sp) ** 2
    span = np.log(max(p_bot[i + 1] - p_top[i], 1.0))
    return d + c_merge + pos + _len_cost(o_logl[j], span, o_trunc[j], s_len)


@njit(cache=True)
def _walk_back(move, m, n):
    """The moves of the cheapest path to ``(m, n)``, first to last: ``(move, first track,
    first cell)``, -1 where none is consumed."""
    out = np.empty((m + n, 3), np.int64)
    k = 0
    i, j = m, n
    while i > 0 or j > 0:
        mv = move[i, j]
        if mv == NEW:
            di, dj = 0, 1
        elif mv == MISS or mv == EXIT:
            di, dj = 1, 0
        elif mv == DIVIDE or mv == OVERSEG:
            di, dj = 1, 2
        elif mv == MERGE:
            di, dj = 2, 1
        elif mv == DIV_CUT_UP or mv == DIV_CUT_LOW:
            di, dj = 1, 3
        else:
            di, dj = 1, 1
        i -= di
        j -= dj
        out[k, 0] = mv
        out[k, 1] = i if di else -1
        out[k, 2] = j if dj else -1
        k += 1
    return out[:k][::-1].copy()


@njit(cache=True)
def predict_and_assign(state, sb_ref, o_top, o_bot, height, costs, ready_fraction, ready_sigma):
    """Predict every track one frame ahead, then :func:`assign_frame`.

    Parameters
    ----------
    state : float array (m, 5)
        Per track (ordered from the closed end): log length, log growth per
        frame, top, frames missed, birth length (NaN or <= 0: unknown).
    sb_ref : float
        Typical birth length of the trench (NaN: unknown), for tracks without one.
    o_top, o_bot : float arrays (n,)
        Observed cells, ordered from the closed end.
    height : float
        Crop length (rows).
    costs : float array
        See :data:`COST_FIELDS`.
    ready_fraction, ready_sigma : float
        A division costs ``((ready_fraction - L / sb) / ready_sigma) ** 2`` more
        while the predicted length ``L`` is below ``ready_fraction`` birth lengths.

    Returns
    -------
    moves : int array (k, 3)
    p_top, p_logl : float arrays (m,)
        The predictions the moves were chosen on.
    """
    m = state.shape[0]
    p_top = np.empty(m)
    p_bot = np.empty(m)
    p_logl = np.empty(m)
    ready = np.zeros(m)
    gap = np.empty(m, np.int64)
    exit_cost = np.empty(m)
    edge = height - 0.5
    push = 0.0
    for i in range(m):
        x, v, top, g, sb = state[i, 0], state[i, 1], state[i, 2], state[i, 3], state[i, 4]
        length = np.exp(x + v)
        # The cells above push this one toward the open end by what they grow.
        p_top[i] = top + push
        push += length - np.exp(x)
        p_logl[i] = x + v
        p_bot[i] = p_top[i] + length
        ref = sb if sb > 0 else sb_ref
        if ref > 0 and length / ref < ready_fraction:
            ready[i] = ((ready_fraction - length / ref) / ready_sigma) ** 2
        gap[i] = int(g)
        sp = (costs[1] + costs[2] * max(p_top[i], 0.0)) * (1.0 + g)
        centre = p_top[i] + 0.5 * length
        exit_cost[i] = 0.0 if centre >= edge else ((edge - centre) / sp) ** 2
    o_trunc = o_bot >= height - 1.5
    moves, _ = assign_frame(p_top, p_bot, p_logl, ready, gap, exit_cost, o_top, o_bot, o_trunc,
                            costs, edge)
    return moves, p_top, p_logl
