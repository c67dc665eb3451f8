"""``batchlib generate``: write a synthetic acquisition and its ground truth."""
from __future__ import annotations

import argparse
import sys

from .config import SyntheticConfig
from .families import FAMILIES, sample_config
from .writers import LAYOUTS, write_acquisition

__all__ = ["configure_parser", "main", "config_from_args"]


def _size(text: str):
    """``"512"`` or ``"HxW"`` -> (height, width)."""
    parts = text.lower().split("x")
    if len(parts) == 1:
        parts = parts * 2
    try:
        h, w = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be N or HxW, got {text!r}") from None
    return h, w


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the generator's options to ``parser``."""
    d = SyntheticConfig.__dataclass_fields__
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--layout", choices=LAYOUTS, default="ome-tiff")
    parser.add_argument("--name", default="demo", help="acquisition name in the file names")
    parser.add_argument("--positions", type=int, default=2)
    parser.add_argument("--timepoints", type=int, default=10)
    parser.add_argument("--size", type=_size, default=(512, 512), help="N or HxW pixels")
    parser.add_argument("--channels", default="phase,gfp",
                        help="comma-separated names; 'phase' is phase contrast, "
                             "others fluorescence")
    parser.add_argument("--phase-channels", default="",
                        help="extra comma-separated channel names rendered as phase contrast")
    parser.add_argument("--sets", type=int, choices=(1, 2), default=d["n_sets"].default)
    parser.add_argument("--direction", type=int, choices=(-1, 0, 1),
                        default=d["single_set_direction"].default,
                        help="with one set: +1 closed ends at the top, -1 at the bottom, 0 random")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--empty-fraction", type=float, default=d["empty_fraction"].default)
    parser.add_argument("--angle", type=float, default=None,
                        help="fixed trench angle in degrees (default: random per position)")
    parser.add_argument("--pixel-size", type=float, default=d["pixel_size_um"].default, help="µm")
    parser.add_argument("--interval", type=float, default=d["frame_interval_s"].default,
                        help="frame interval in seconds")
    parser.add_argument("--max-drift", type=float, default=d["max_drift_px"].default, help="px")
    parser.add_argument("--no-ground-truth", action="store_true", help="write the images only")
    parser.add_argument("--no-channel-names", action="store_true",
                        help="write no channel names into the image files (OME, ImageJ labels)")
    parser.add_argument("--family", choices=FAMILIES, default=None,
                        help="draw the chip, cells, optics and channel names from this scenario "
                             "family for --seed (a tuning seed 0-999 or a held-out seed >= "
                             "10000); only --size, --positions and --timepoints apply besides")
    return parser


def config_from_args(args) -> SyntheticConfig:
    """The generator's configuration from the parsed command line."""
    if getattr(args, "family", None):
        return sample_config(args.family, args.seed, height=args.size[0], width=args.size[1],
                             n_positions=args.positions, n_timepoints=args.timepoints)
    split = lambda s: tuple(c.strip() for c in s.split(",") if c.strip())  # noqa: E731
    return SyntheticConfig(
        height=args.size[0], width=args.size[1], n_positions=args.positions,
        n_timepoints=args.timepoints, channels=split(args.channels),
        phase_channels=split(args.phase_channels), n_sets=args.sets,
        single_set_direction=args.direction, seed=args.seed, empty_fraction=args.empty_fraction,
        angle_deg=args.angle, pixel_size_um=args.pixel_size, frame_interval_s=args.interval,
        max_drift_px=args.max_drift)


def main(args) -> int:
    """Run the generator for parsed ``args``; returns the exit status."""
    try:
        cfg = config_from_args(args)
    except ValueError as exc:
        print(f"batchlib generate: {exc}", file=sys.stderr)
        return 2
    written = write_acquisition(args.out, cfg, layout=args.layout, name=args.name,
                                ground_truth=not args.no_ground_truth,
                                channel_names=not getattr(args, "no_channel_names", False))
    print(f"wrote {len(written['images'])} image file(s) ({args.layout}) and "
          f"{len(written['ground_truth'])} ground-truth folder(s) to {args.out}")
    return 0
