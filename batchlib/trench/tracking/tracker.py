"""Frame-by-frame tracking of the cells of one trench.

:class:`TrenchTracker` keeps, for every cell it follows, a small state: the
log length and log growth rate per frame (an alpha-beta filter on the log
length, i.e. exponential growth), the position of its closed-end side and
how many frames it has been missed. Each frame it predicts every track
(length grows exponentially; position moves toward the open end by the growth
of the cells above it), matches the ordered predictions to the ordered cells
with :func:`~.assign.predict_and_assign` and applies the moves.

Two decisions are taken with a short delay, so the labels of the last
``undo_frames`` frames stay open: a track missed for ``max_gap`` frames is
picked up again when it reappears (gap closing), and a "division" whose two
daughters fuse again within ``undo_frames`` frames was a cell cut in two by the
segmentation; it is undone and the mother's track continues. Everything older
is final, which is what makes appending frames cheap and exact: the state
after the last frame (:meth:`TrenchTracker.to_dict`) is all a later run needs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .assign import (COST_FIELDS, DIV_CUT_LOW, DIV_CUT_UP, DIVIDE, HALF_LOW, HALF_UP, LINK,
                     MERGE, MISS, NEW, OVERSEG, predict_and_assign)

__all__ = ["TrackParams", "TrenchTracker", "track_trench"]


@dataclass
class TrackParams:
    """Costs and tolerances of the tracker (pixels, log-length, frames).

    The defaults suit rod-shaped bacteria imaged every few minutes (cells grow
    a few percent to ~20 % per frame); see ``docs/tracking.md``.
    """

    sigma_length: float = 0.08     # log-length mismatch of one standard deviation
    sigma_pos: float = 2.5         # position mismatch (px) at the closed end ...
    sigma_pos_rel: float = 0.04    # ... growing with the distance from it
    c_divide: float = 2.0          # cost of a division of a cell of division size
    c_overseg: float = 8.0         # cost of taking two pieces as one cell
    c_miss: float = 12.0           # cost of a missed cell (gap) or a lost track
    c_new: float = 12.0            # cost of a cell without a track
    c_merge: float = 10.0          # cost of two tracks sharing one segmented object
    sigma_asym: float = 0.1        # sd of the daughters' length fraction around 0.5
    sigma_half: float = 0.2        # log-length tolerance of a division with a missed daughter
    ready_fraction: float = 1.3    # a cell divides only after growing by this factor ...
    ready_sigma: float = 0.08      # ... (soft limit, relative to its birth length)
    gain_length: float = 0.7       # filter gain of the log length
    gain_rate: float = 0.25        # filter gain of the growth rate
    max_rate: float = 0.7          # bound of the log growth per frame
    max_gap: int = 1               # frames a cell may be missed and picked up again
    undo_frames: int = 2           # a division undone if the daughters fuse within this
    septum_px: float = 1.5         # assumed gap between daughters when one is missed

    def costs(self) -> np.ndarray:
        return np.array([getattr(self, f) for f in COST_FIELDS], np.float64)


class _Track:
    __slots__ = ("id", "parent", "x", "v", "top", "gap", "sb")
    # sb: birth length; NaN unknown (founder, new), -1: to take from the first sighting

    def __init__(self, id, parent, x, v, top, gap=0, sb=math.nan):
        self.id, self.parent, self.x, self.v, self.top, self.gap, self.sb = \
            int(id), int(parent), float(x), float(v), float(top), int(gap), float(sb)

    def as_list(self):
        return [self.id, self.parent, self.x, self.v, self.top, self.gap, self.sb]


@dataclass
class _Frame:
    """One frame being tracked: its cells (ordered from the closed end), the tracks'
    predictions, and what applying the moves builds."""

    labels: list
    o_top_a: np.ndarray
    o_bot_a: np.ndarray
    o_top: list
    o_bot: list
    o_trunc: list
    p_top: list = field(default_factory=list)
    p_logl: list = field(default_factory=list)
    p_len: list = field(default_factory=list)
    kept: list = field(default_factory=list)      # the tracks after this frame
    recs: list = field(default_factory=list)      # [label, cell, parent] of every cell
    linked_v: list = field(default_factory=list)  # growth rates of the linked tracks

    def rec(self, j, tr):
        self.recs.append([int(self.labels[j]), tr.id, tr.parent])


class TrenchTracker:
    """Tracks the cells of one trench; feed frames in order with :meth:`step`.

    Parameters
    ----------
    height : int
        Length of the trench crop (rows); cells leave when their centre passes
        row ``height - 0.5``.
    params : TrackParams, optional
    state : dict, optional
        :meth:`to_dict` of an earlier tracker to continue from.
    """

    def __init__(self, height, params=None, state=None):
        self.height = float(height)
        self.params = params or TrackParams()
        self._costs = self.params.costs()
        s = state or {}
        self.t = int(s.get("t", 0))
        self.next_id = int(s.get("next_id", 1))
        self.sb_ref = float(s.get("sb_ref", math.nan))
        self.v_ref = float(s.get("v_ref", 0.0))
        self.tracks = [_Track(*a) for a in s.get("tracks", [])]
        # parent id -> [division frame, parent's track state, daughter ids]
        self.divisions = {int(k): [v[0], _Track(*v[1]), v[2]] for k, v in s.get("divisions", [])}
        # open frames: [t, [[label, cell, parent], ...]]
        self.buffer = [[t, [list(r) for r in recs]] for t, recs in s.get("buffer", [])]
        self.final = []

    def to_dict(self) -> dict:
        """The whole state as plain JSON-able values."""
        return {"t": self.t, "next_id": self.next_id, "sb_ref": self.sb_ref, "v_ref": self.v_ref,
                "tracks": [tr.as_list() for tr in self.tracks],
                "divisions": [[k, [v[0], v[1].as_list(), v[2]]] for k, v in self.divisions.items()],
                "buffer": self.buffer}

    # -- helpers -------------------------------------------------------------------
    def _new(self, parent, length, v, top, sb, gap=0):
        tr = _Track(self.next_id, parent, math.log(max(length, 1.0)), v, top, gap, sb)
        self.next_id += 1
        return tr

    def _update(self, tr, logl, p_logl, top, trunc):
        p = self.params
        e = logl - p_logl
        if trunc and e < 0:
            tr.x = p_logl  # a truncated cell says nothing about the length
        else:
            tr.x = p_logl + p.gain_length * e
            tr.v = min(max(tr.v + p.gain_rate * e, -p.max_rate), p.max_rate)
        tr.top, tr.gap = top, 0
        if tr.sb < 0 and not trunc:
            tr.sb = math.exp(logl)

    # -- one frame ------------------------------------------------------------------
    def step(self, labels, top, bottom):
        """Process frame ``self.t``: cells ``labels`` with extents ``[top, bottom]`` (rows).

        Returns nothing; finished frames accumulate in :attr:`final`.
        """
        f = self._observe(labels, top, bottom)
        moves = self._predict_and_match(f)
        for mv, i, j in moves:
            if mv == LINK or mv == OVERSEG:
                self._link(f, i, j, j + 1 if mv == OVERSEG else j)
            elif mv == DIVIDE or mv == DIV_CUT_UP or mv == DIV_CUT_LOW:
                self._divide(f, mv, i, j)
            elif mv == HALF_UP or mv == HALF_LOW:
                self._half_seen(f, mv, i, j)
            elif mv == MERGE:
                self._merge(f, i, j)
            elif mv == MISS:
                self._miss(f, i)
            elif mv == NEW:
                self._new_cell(f, j)
            # EXIT: the track ends
        self._close_frame(f)

    def _observe(self, labels, top, bottom) -> _Frame:
        """The frame's cells ordered from the closed end."""
        order = np.argsort(top, kind="stable")
        o_top = np.asarray(top, np.float64)[order]
        o_bot = np.maximum(np.asarray(bottom, np.float64)[order], o_top + 1.0)
        return _Frame(labels=np.asarray(labels, np.int64)[order].tolist(), o_top_a=o_top, o_bot_a=o_bot,
                      o_top=o_top.tolist(), o_bot=o_bot.tolist(),
                      o_trunc=(o_bot >= self.height - 1.5).tolist())

    def _predict_and_match(self, f: _Frame) -> list:
        """The moves that match the tracks to the cells; fills in the predictions of ``f``."""
        if not self.tracks:
            return [(NEW, -1, j) for j in range(len(f.o_top))]
        p = self.params
        state = np.array([(tr.x, tr.v, tr.top, tr.gap, tr.sb) for tr in self.tracks], np.float64)
        moves, p_top, p_logl = predict_and_assign(
            state, self.sb_ref, f.o_top_a, f.o_bot_a, self.height, self._costs, p.ready_fraction,
            p.ready_sigma)
        f.p_top, f.p_logl = p_top.tolist(), p_logl.tolist()
        f.p_len = [math.exp(x) for x in f.p_logl]
        return moves.tolist()

    # -- the moves (see .assign) ------------------------------------------------------
    def _link(self, f: _Frame, i, j, jb):
        """Track ``i`` continues as cell ``j`` (as cells ``j..jb`` when it was cut in two)."""
        tr = self.tracks[i]
        self._update(tr, math.log(f.o_bot[jb] - f.o_top[j]), f.p_logl[i], f.o_top[j], f.o_trunc[jb])
        f.kept.append(tr)
        f.linked_v.append(tr.v)
        f.rec(j, tr)
        if jb != j:
            f.rec(jb, tr)

    def _divide(self, f: _Frame, mv, i, j):
        """Track ``i`` divided: two new tracks; each daughter is one cell, or two pieces of one
        (a cut by the segmentation)."""
        parts = {DIVIDE: ((j,), (j + 1,)), DIV_CUT_UP: ((j, j + 1), (j + 2,)),
                 DIV_CUT_LOW: ((j,), (j + 1, j + 2))}[mv]
        tr = self.tracks[i]
        kids = []
        for rows in parts:
            a, b = rows[0], rows[-1]
            length = f.o_bot[b] - f.o_top[a]
            kid = self._new(tr.id, length, tr.v, f.o_top[a], math.nan if f.o_trunc[b] else length)
            kids.append(kid)
            for r in rows:
                f.rec(r, kid)
        self.divisions[tr.id] = [self.t, tr, [kids[0].id, kids[1].id]]
        sbs = [k.sb for k in kids if k.sb > 0]
        if sbs:
            sb = sum(sbs) / len(sbs)
            self.sb_ref = sb if not self.sb_ref > 0 else 0.8 * self.sb_ref + 0.2 * sb
        f.kept += kids

    def _half_seen(self, f: _Frame, mv, i, j):
        """Track ``i`` divided and only one daughter, cell ``j``, is seen (the upper one for
        ``HALF_UP``): the other is a track missed this frame, unless it has left."""
        tr = self.tracks[i]
        p = self.params
        length = f.o_bot[j] - f.o_top[j]
        rest = max(f.p_len[i] - length - p.septum_px, 0.3 * f.p_len[i])
        seen = self._new(tr.id, length, tr.v, f.o_top[j], math.nan if f.o_trunc[j] else length)
        if mv == HALF_UP:
            f.kept.append(seen)
            below = f.o_bot[j] + p.septum_px
            if below + 0.5 * rest < self.height - 0.5:  # else it has left
                f.kept.append(self._new(tr.id, rest, tr.v, below, -1.0, gap=1))
        else:
            other = self._new(tr.id, rest, tr.v, f.p_top[i], -1.0, gap=1)
            f.kept += [other, seen]
        f.rec(j, seen)

    def _merge(self, f: _Frame, i, j):
        """Tracks ``i`` and ``i + 1`` share cell ``j``: the division of their mother is undone if
        they are its recent daughters, else the lower one is missed."""
        a, b = self.tracks[i], self.tracks[i + 1]
        t = self.t
        div = self.divisions.get(a.parent)
        if div is not None and a.parent == b.parent and div[2] == [a.id, b.id] \
                and t - div[0] <= self.params.undo_frames:
            mother = self._undo(a.parent)
            steps = t - div[0] + 1
            self._update(mother, math.log(f.o_bot[j] - f.o_top[j]),
                         mother.x + steps * mother.v, f.o_top[j], f.o_trunc[j])
            f.kept.append(mother)
            f.rec(j, mother)
        else:
            a.x, a.top, a.gap = f.p_logl[i], f.o_top[j], 0
            f.kept.append(a)
            f.rec(j, a)
            self._miss(f, i + 1)

    def _miss(self, f: _Frame, i):
        """Track ``i`` is not seen: kept at its prediction for ``max_gap`` frames."""
        tr = self.tracks[i]
        if tr.gap < self.params.max_gap:
            tr.gap += 1
            tr.x, tr.top = f.p_logl[i], f.p_top[i]
            f.kept.append(tr)

    def _new_cell(self, f: _Frame, j):
        """Cell ``j`` has no track: a new one without parent."""
        length = f.o_bot[j] - f.o_top[j]
        tr = self._new(0, length, self.v_ref, f.o_top[j], math.nan)
        f.kept.append(tr)
        f.rec(j, tr)

    def _close_frame(self, f: _Frame):
        """The frame's tracks become the state; frames older than ``undo_frames`` are final."""
        p, t = self.params, self.t
        if f.linked_v:
            mean_v = sum(f.linked_v) / len(f.linked_v)
            self.v_ref = 0.9 * self.v_ref + 0.1 * mean_v if t else mean_v
        f.kept.sort(key=lambda tr: tr.top)
        self.tracks = _drop_ghosts(f.kept)
        self.buffer.append([t, f.recs])
        self.t = t + 1
        while self.buffer and self.buffer[0][0] < self.t - p.undo_frames:
            self.final.append(self.buffer.pop(0))
        for k in [k for k, d in self.divisions.items() if d[0] < self.t - p.undo_frames]:
            del self.divisions[k]

    def _undo(self, mother_id):
        """The daughters of ``mother_id`` were one cell: relabel their open frames."""
        t_div, mother, kids = self.divisions.pop(mother_id)
        for _, recs in self.buffer:
            for r in recs:
                if r[1] in kids:
                    r[1], r[2] = mother.id, mother.parent
        return mother

    def flush(self) -> list:
        """All labelled frames, open ones included: ``[[t, [[label, cell, parent], ...]], ...]``."""
        out = self.final + [[t, [list(r) for r in recs]] for t, recs in self.buffer]
        self.final = []
        return out


def _drop_ghosts(tracks):
    """Drop missed tracks that overlap a cell seen in this frame by more than half.

    Two cells cannot overlap: such a track duplicates the seen one (left over
    from a segmentation error) and would otherwise take turns with it.
    """
    if not any(tr.gap for tr in tracks):
        return tracks
    ext = [(tr.top, tr.top + math.exp(tr.x)) for tr in tracks]
    out = []
    for k, tr in enumerate(tracks):
        if tr.gap:
            a, b = ext[k]
            ghost = False
            for q in (k - 1, k + 1):
                if 0 <= q < len(tracks) and not tracks[q].gap:
                    c, d = ext[q]
                    if min(b, d) - max(a, c) > 0.5 * min(b - a, d - c):
                        ghost = True
            if ghost:
                continue
        out.append(tr)
    return out


def track_trench(frames, n_frames, height, params=None, state=None):
    """Track one trench over frames ``state["t"]`` (0 without a state) to ``n_frames - 1``.

    Parameters
    ----------
    frames : dict of int to tuple
        ``t -> (labels, top, bottom)`` of the cells in frame ``t`` (absent: no cells).
    n_frames : int
    height : int
        Crop length along the trench (rows).
    params : TrackParams, optional
    state : dict, optional
        The state returned by an earlier call on the first frames.

    Returns
    -------
    records : ndarray (k, 4) int64
        ``t, label, cell, parent`` (trench-local ids from 1; parent 0 = none) of
        every cell of frames ``>= first final frame``: without a state all of them,
        with one the frames from ``state["t"] - undo_frames`` on.
    state : dict
        State after the last frame, for a later call with more frames.
    """
    tracker = TrenchTracker(height, params, state)
    empty = (np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
    for t in range(tracker.t, n_frames):
        tracker.step(*frames.get(t, empty))
    state = tracker.to_dict()
    rows = [(t, *r) for t, recs in tracker.flush() for r in recs]
    return np.array(rows, np.int64).reshape(-1, 4), state
