"""Tracking, lineages and cell cycles against the generator's lineage truth; the Track job."""
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from batchlib.io import open_file, read_table
from batchlib.trench.synthetic import SyntheticConfig, write_acquisition
from batchlib.trench.synthetic.chip import make_layout
from batchlib.trench.synthetic.lineage import simulate_lineage
from batchlib.trench.tracking import cycle_table, lineage_columns, track_cells
from batchlib.trench.tracking.evaluate import (cycle_errors, inject_errors, link_error,
                                               mother_division_f1, truth_cells)

ROOT = Path(__file__).resolve().parents[2]
H = 120  # crop length of the hand-made trenches


def simulated(seed, n_timepoints=60, **kw):
    cfg = SyntheticConfig(n_timepoints=n_timepoints, seed=seed, **kw)
    layout = make_layout(cfg, 0)
    return cfg, layout.trench_length, simulate_lineage(cfg, layout, 0)


def run_all(cells, height, n_frames, dt=180.0):
    tracks, _ = track_cells(cells, height, n_frames)
    times = np.arange(n_frames) * dt
    tracks = lineage_columns(tracks, cells, height, times)
    return tracks, cycle_table(tracks, cells, height, times, 0.1, n_frames)


def table(rows):
    """Cells ``(n, t, top, length)`` -> a cell table with labels from the closed end."""
    d = pd.DataFrame(rows, columns=["n", "t", "top", "length_px"])
    d["centroid_y"] = d["top"] + d["length_px"] / 2
    d = d.sort_values(["n", "t", "top"]).reset_index(drop=True)
    d["label"] = d.groupby(["n", "t"]).cumcount() + 1
    return d


def growing_trench(n_frames, rate=0.07, gap=1.5, height=H, birth=20.0, n=0):
    """Exact cells of one trench: growth by ``exp(rate)`` per frame, division at 2x birth.

    Returns the table and the true id of every row (ids: 1 + index in the list of cells).
    """
    cells = [[1, 0, birth * 1.5]]  # id, parent, length
    next_id, rows, ids = 2, [], []
    for t in range(n_frames):
        if t:
            new = []
            for c in cells:
                c[2] *= np.exp(rate)
                if c[2] >= 2 * birth:
                    usable = c[2] - gap
                    new += [[next_id, c[0], usable / 2], [next_id + 1, c[0], usable / 2]]
                    next_id += 2
                else:
                    new.append(c)
            cells = new
        s, kept = 0.0, []
        for c in cells:
            if s + c[2] / 2 > height - 0.5:
                break
            rows.append((n, t, s, min(c[2], height - 0.5 - s)))
            ids.append(c[0])
            kept.append(c)
            s += c[2] + gap
        cells = kept
    d = pd.DataFrame(rows, columns=["n", "t", "top", "length_px"]).assign(true_id=ids)
    d["centroid_y"] = d["top"] + d["length_px"] / 2
    d["label"] = d.groupby(["n", "t"]).cumcount() + 1
    return d


def id_map(tracks, cells):
    d = tracks.merge(cells[["n", "t", "label", "true_id"]], on=["n", "t", "label"])
    return d.groupby("true_id")["cell_id"].agg(lambda s: sorted(set(s)))


# -- against the generator -----------------------------------------------------------

@pytest.mark.parametrize("seed", [7, 8])
def test_tracks_and_cycles_match_ground_truth(seed):
    cfg, height, sim = simulated(seed)
    cells = truth_cells(sim.states, height)
    tracks, cycles = run_all(cells, height, cfg.n_timepoints, cfg.frame_interval_s)
    links = link_error(tracks, cells, sim.lineage)
    assert links["true_links"] > 2000
    assert links["error"] <= 0.005, links
    div = mother_division_f1(cycles, cells, sim.lineage)
    assert div["true"] > 30 and div["f1"] >= 0.99, div
    err = cycle_errors(cycles, tracks, cells, sim.lineage, cfg.frame_interval_s)
    assert err["cycles"] > 20
    assert err["tau"] <= 0.03 and err["elong_rate"] <= 0.03 and err["sb"] <= 0.05, err
    assert abs(err["adder_slope"] - err["adder_slope_true"]) <= 0.05, err
    # Generation time and growth of the generator: ln 2 / 1800 s with a 10 % spread.
    done = cycles[cycles["complete"]]
    assert abs(done["elong_rate"].median() / (np.log(2) / 0.5) - 1) < 0.05
    known = done.dropna(subset=["sd_px"])
    assert len(known) > 0.8 * len(done)
    assert ((known["sd_px"] - known["sb_px"] - known["delta_px"]).abs() < 1e-9).all()
    # Generations: daughters are one more than their mother.
    gen = cycles.set_index("cell_id")["generation"]
    kids = cycles[cycles["parent_id"] > 0]
    assert (kids["generation"].to_numpy() == gen.loc[kids["parent_id"]].to_numpy() + 1).all()


def test_degrades_gracefully_with_segmentation_errors():
    cfg, height, sim = simulated(9)
    clean = truth_cells(sim.states, height)
    cells = inject_errors(clean, miss=0.01, split=0.01, rng=np.random.default_rng(1))
    assert len(cells) != len(clean)
    tracks, cycles = run_all(cells, height, cfg.n_timepoints)
    assert link_error(tracks, cells, sim.lineage)["error"] < 0.02
    assert mother_division_f1(cycles, cells, sim.lineage)["f1"] > 0.95


@pytest.mark.parametrize("split_at", [1, 2, 17, 30, 59])
def test_incremental_equals_from_scratch(split_at):
    cfg, height, sim = simulated(10)
    cells = inject_errors(truth_cells(sim.states, height), miss=0.03, split=0.03,
                          rng=np.random.default_rng(2))
    full, _ = track_cells(cells, height, 60)
    first, states = track_cells(cells[cells["t"] < split_at], height, split_at)
    rest, _ = track_cells(cells, height, 60, states=states)
    undo = 2
    assert rest["t"].min() >= split_at - undo
    joined = pd.concat([first[first["t"] < split_at - undo], rest]).sort_values(
        ["n", "t", "label"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(joined, full)
    # Ids of the frames before the relabelled tail did not change.
    old = first[first["t"] < split_at - undo]
    pd.testing.assert_frame_equal(old.reset_index(drop=True),
                                  full[full["t"] < split_at - undo].reset_index(drop=True))


# -- hand-made trenches ------------------------------------------------------------

def test_cells_leaving_the_trench_and_divisions():
    cells = growing_trench(40)
    tracks, cycles = run_all(cells, H, 40)
    ids = id_map(tracks, cells)
    assert (ids.map(len) == 1).all()  # one track per true cell ...
    assert ids.map(lambda v: v[0]).is_unique  # ... and one true cell per track
    # Every cell that left through the open end before the last frame is marked so.
    last = cells.groupby("true_id")["t"].max()
    cyc = cycles.set_index("cell_id")
    gone = [ids[c][0] for c, t in last.items() if t < 39]
    assert len(gone) > 5
    assert set(cyc.loc[gone, "fate"]) <= {"exited", "divided"}
    assert (cyc.loc[gone, "fate"] == "exited").sum() > 3
    # The mother divides every ln(40 / 19.25) / 0.07 = 10.4 frames (birth: half of 40 - septum).
    mothers = cycles[cycles["is_mother"] & cycles["complete"]]
    assert len(mothers) >= 2
    assert set(mothers["division_frame"] - mothers["birth_frame"]) <= {10, 11}
    np.testing.assert_allclose(mothers["elong_rate"], 0.07 * 20, rtol=1e-6)  # per hour at 3 min
    # sd: the mother's length at the moment of division: two daughters and the septum.
    sb = cyc["sb_px"]
    np.testing.assert_allclose(mothers["sd_px"], 2 * sb.loc[mothers["daughter1_id"]] + 1.5, rtol=1e-9)
    np.testing.assert_allclose(mothers["sb_px"], sb.loc[mothers["cell_id"]], rtol=1e-9)
    assert (mothers["sd_px"] >= 40).all() and (mothers["sd_px"] < 40 * np.exp(0.07)).all()


def test_one_frame_gap_is_closed():
    cells = growing_trench(30)
    # Drop the second cell from the closed end at frame 12, and the mother at frame 20.
    drop = ((cells["t"] == 12) & (cells["label"] == 2)) | ((cells["t"] == 20) & (cells["label"] == 1))
    gapped = cells[~drop].copy()
    gapped["label"] = gapped.groupby(["n", "t"]).cumcount() + 1
    tracks, cycles = run_all(gapped, H, 30)
    ids = id_map(tracks, gapped)
    assert (ids.map(len) == 1).all()
    for t in (12, 20):
        lost = cells.loc[drop & (cells["t"] == t), "true_id"].iloc[0]  # noqa: F841 - used in query()
        seen = tracks.merge(gapped, on=["n", "t", "label"]).query("true_id == @lost")["t"]
        assert t not in set(seen) and {t - 1, t + 1} <= set(seen)
    # The reference run without the gap has the same lineage (ids aside).
    ref_tracks, ref_cycles = run_all(cells, H, 30)
    assert len(cycles) == len(ref_cycles)
    assert cycles["complete"].sum() == ref_cycles["complete"].sum()


def test_spurious_split_does_not_break_the_lineage():
    cells = growing_trench(30)
    # The mother early in its cycle (below 1.3x its birth length: no division yet).
    mother = cells[cells["label"] == 1]
    t0 = int(mother.loc[(mother["length_px"] < 24) & (mother["t"] > 10), "t"].iloc[1])
    split = (cells["t"] == t0) & (cells["label"] == 1)
    row = cells[split].iloc[0]
    a = row.copy()
    b = row.copy()
    a["length_px"] = row["length_px"] * 0.45
    b["top"], b["length_px"] = row["top"] + row["length_px"] * 0.55, row["length_px"] * 0.45
    cut = pd.concat([cells[~split], pd.DataFrame([a, b])]).sort_values(["n", "t", "top"])
    cut["centroid_y"] = cut["top"] + cut["length_px"] / 2
    cut["label"] = cut.groupby(["n", "t"]).cumcount() + 1
    tracks, cycles = run_all(cut, H, 30)
    ref_tracks, ref_cycles = run_all(cells, H, 30)
    # The same cycles as without the error: no division was invented.
    cols = ["birth_frame", "division_frame", "is_mother", "complete"]
    pd.testing.assert_frame_equal(cycles[cols].reset_index(drop=True),
                                  ref_cycles[cols].reset_index(drop=True))
    both = tracks[(tracks["t"] == t0) & tracks["label"].isin([1, 2])]["cell_id"]
    assert both.nunique() == 1


def test_spurious_split_of_a_large_cell_is_undone():
    cells = growing_trench(30)
    # The mother at 1.75x its birth length: a division would be plausible, then it fuses back.
    mother = cells[cells["label"] == 1]
    t0 = int(mother.loc[(mother["length_px"] > 33) & (mother["t"] > 10), "t"].iloc[0])
    split = (cells["t"] == t0) & (cells["label"] == 1)
    row = cells[split].iloc[0]
    a, b = row.copy(), row.copy()
    a["length_px"] = (row["length_px"] - 1.5) / 2
    b["top"], b["length_px"] = row["top"] + a["length_px"] + 1.5, a["length_px"]
    cut = pd.concat([cells[~split], pd.DataFrame([a, b])]).sort_values(["n", "t", "top"])
    cut["centroid_y"] = cut["top"] + cut["length_px"] / 2
    cut["label"] = cut.groupby(["n", "t"]).cumcount() + 1
    tracks, cycles = run_all(cut, H, 30)
    _, ref_cycles = run_all(cells, H, 30)
    assert tracks.loc[(tracks["t"] == t0) & tracks["label"].isin([1, 2]), "cell_id"].nunique() == 1
    cols = ["birth_frame", "division_frame", "is_mother", "complete"]
    pd.testing.assert_frame_equal(cycles[cols].reset_index(drop=True),
                                  ref_cycles[cols].reset_index(drop=True))


def test_empty_trench_and_empty_frames():
    full = growing_trench(20, n=1)
    cells = full[~full["t"].isin([5, 6])]  # two frames without any cell in trench 1
    tracks, states = track_cells(cells, H, 20)
    assert set(tracks["n"]) == {1} and len(tracks) == len(cells)
    # Trench 0 never holds a cell: no rows, no state.
    assert 0 not in states
    # After two empty frames the cells are new tracks (a gap of one frame at most).
    before = set(tracks.loc[tracks["t"] == 4, "cell_id"])
    after = set(tracks.loc[tracks["t"] == 7, "cell_id"])
    assert before and after and not before & after
    none, states = track_cells(cells.iloc[:0], H, 20)
    assert none.empty and list(none.columns) == ["n", "t", "label", "cell_id", "parent_id"]
    times = np.arange(20) * 180.0
    lin = lineage_columns(none, cells.iloc[:0], H, times)
    cyc = cycle_table(lin, cells.iloc[:0], H, times)
    assert cyc.empty and "tau" in cyc and "elong_rate" in cyc


def test_track_job_on_bad_and_empty_tables(tmp_path):
    from batchlib.errors import InvalidInputError
    from batchlib.io import create_dataset, write_table
    from batchlib.trench.jobs import Track

    path = tmp_path / "p.h5"
    cells = growing_trench(24)[["n", "t", "label", "centroid_y", "length_px"]]
    with open_file(path, "a") as f:
        create_dataset(f, "segmentation/cells", shape=(2, 24, H, 16), dtype="uint16")
        write_table(f, "tables/cells/cells", cells.drop(columns="centroid_y"))
        with pytest.raises(InvalidInputError, match=r"p\.h5.*centroid_y"):
            Track(qc_plot=False).process_container(f, str(path))
        # No cell at all: empty tables, no error.
        write_table(f, "tables/cells/cells", cells.iloc[:0])
        Track(qc_plot=True).process_container(f, str(path))
        assert read_table(f, "tables/tracks/cells").empty
        assert read_table(f, "tables/cycles/cells").empty
        # Cells in trench 0 only (trench 1 empty); no frame times: the interval option.
        write_table(f, "tables/cells/cells", cells)
        Track(frame_interval_s=180.0, qc_plot=True).process_container(f, str(path))
        cycles = read_table(f, "tables/cycles/cells")
    done = cycles[cycles["complete"] & cycles["is_mother"]]
    assert len(done) == 1 and 30 <= done["tau"].iloc[0] <= 33  # 10-11 frames of 3 min
    assert set(cycles["n"]) == {0}
    assert len(pd.read_parquet(tmp_path / "tables" / "cycles" / "p.parquet")) == len(cycles)
    assert (tmp_path / "qc" / "p_tracks.png").is_file()


# -- the Track job in the workflow ------------------------------------------------------

T = 14
CFG = SyntheticConfig(height=320, width=256, n_positions=2, n_timepoints=T, n_sets=1,
                      channels=("phase", "gfp"), seed=21)


def load_workflow():
    spec = importlib.util.spec_from_file_location("trench_workflow",
                                                  ROOT / "workflows" / "trench_workflow.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def workflow_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("track")
    write_acquisition(tmp / "a", CFG, layout="tiff-sequence", name="A")
    raw, out, later = tmp / "raw", tmp / "out", tmp / "later"
    raw.mkdir()
    later.mkdir()
    shutil.move(str(tmp / "a" / "A"), raw / "A")
    for t in range(T - 4, T):  # the last frames arrive later
        for f in (raw / "A").glob(f"t{t:03d}*"):
            shutil.move(str(f), later / f.name)
    wf = load_workflow()
    argv = ["--input_folder", str(raw), "--folder", str(out), "--executor", "serial",
            "--ingest_phase_channels", "c0", "--progress", "false", "--log_level", "WARNING",
            # A TIFF sequence records no frame times.
            "--track_frame_interval_s", str(CFG.frame_interval_s)]
    assert wf.main(argv) == 0
    return {"tmp": tmp, "raw": raw, "out": out, "later": later, "wf": wf, "argv": argv}


def test_workflow_tracks_then_continues_on_new_frames(workflow_run, capsys):
    from batchlib.trench.jobs import read_cycles

    out = workflow_run["out"]
    with open_file(out / "A_pos000.h5", "r") as f:
        first = read_table(f, "tables/tracks/cells")
    assert first["t"].max() == T - 5
    for f in workflow_run["later"].iterdir():
        shutil.move(str(f), workflow_run["raw"] / "A" / f.name)
    assert workflow_run["wf"].main(workflow_run["argv"]) == 0
    summary = capsys.readouterr().out.strip().splitlines()
    assert summary[-1].lstrip().startswith("cell cycles:") and "mean generation time" in summary[-1]

    for p in range(CFG.n_positions):
        name = f"A_pos{p:03d}"
        with open_file(out / f"{name}.h5", "r") as f:
            tracks = read_table(f, "tables/tracks/cells")
            cycles = read_table(f, "tables/cycles/cells")
            cells = read_table(f, "tables/cells/cells")
            height = f["segmentation/cells"].shape[2]
        assert tracks["t"].max() == T - 1
        # Joined to the cell table by its keys, one row each.
        key = ["n", "t", "label"]
        assert len(tracks.merge(cells, on=key)) == len(cells) == len(tracks)
        # Equal to tracking all frames at once; earlier ids unchanged.
        scratch, _ = track_cells(cells, height, T)
        times = np.arange(T) * CFG.frame_interval_s
        scratch = lineage_columns(scratch, cells, height, times)
        pd.testing.assert_frame_equal(tracks[scratch.columns], scratch)
        if p == 0:
            old = first[first["t"] < T - 4 - 2].reset_index(drop=True)
            kept = tracks[tracks["t"] < T - 6][old.columns].reset_index(drop=True)
            pd.testing.assert_frame_equal(kept, old)
        assert (cycles["tau"].dropna() > 0).all()
        # The parquet copies.
        pq = pd.read_parquet(out / "tables" / "cycles" / f"{name}.parquet")
        pd.testing.assert_frame_equal(pq, cycles, check_dtype=False)
        assert (out / "qc" / f"{name}_tracks.png").stat().st_size > 10_000
    # The folder's cycles read as one pandas dataset.
    folder = pd.read_parquet(out / "tables" / "cycles")
    assert len(folder) == len(read_cycles(out)) > 20
    assert {"cell_id", "parent_id", "daughter1_id", "daughter2_id", "trench", "birth_frame",
            "division_frame", "birth_time_s", "division_time_s", "sb", "sd", "delta", "tau",
            "elong_rate", "septum_position", "width", "c1_mean_bgsub", "complete",
            "is_mother"} <= set(folder.columns)
    done = folder[folder["complete"]]
    assert len(done) >= 3
    # Segmented cells on generated images: generation time near 30 min, growth near ln 2 / 0.5 h.
    assert 20 < done["tau"].median() < 40
    assert 1.0 < done["elong_rate"].median() < 1.8


def test_workflow_rerun_does_nothing(workflow_run):
    import json

    out = workflow_run["out"]
    files = sorted((out / "tables" / "tracks").glob("*.parquet"))
    mtimes = [f.stat().st_mtime_ns for f in files]
    assert workflow_run["wf"].main(workflow_run["argv"]) == 0
    status = json.loads((out / "batchlib" / "Track.status").read_text())
    assert not [k for k, e in status["files"].items() if e.get("this_run")]
    assert mtimes == [f.stat().st_mtime_ns for f in files]


def test_workflow_redoes_a_deleted_tracks_file(workflow_run):
    """The parquet copies beside the containers are recorded with them: one deleted
    (or damaged) is written again by the next run, for that container only."""
    import json

    out = workflow_run["out"]
    gone = out / "tables" / "cycles" / "A_pos000.parquet"
    other = out / "tables" / "cycles" / "A_pos001.parquet"
    before = pd.read_parquet(gone)
    other_mtime = other.stat().st_mtime_ns
    gone.unlink()
    assert workflow_run["wf"].main(workflow_run["argv"]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(gone), before)
    assert other.stat().st_mtime_ns == other_mtime
    status = json.loads((out / "batchlib" / "Track.status").read_text())
    assert [k for k, e in status["files"].items() if e.get("this_run")] == ["A_pos000.h5"]


def test_tracks_files_are_named_by_the_whole_container_stem():
    from batchlib.trench.jobs import Track

    a, b = (Track().folder_outputs(f"out/exp.v{v}_pos000.h5") for v in (2, 3))
    assert a != b and a[0].endswith("exp.v2_pos000.parquet")
