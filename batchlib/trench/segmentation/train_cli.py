"""``batchlib train-segmenter``: train the U-Net on generated data, or fine-tune it.

    batchlib train-segmenter --out models/unet.pt                 # from the generator
    batchlib train-segmenter --out mine.pt --finetune corrected/ --label_name cells

Writes the weights and ``MODEL_CARD.md`` beside them. Use the result with
``--segment_method unet --segment_method_params '{"weights": "mine.pt"}'``.
"""
from __future__ import annotations

import datetime
import shlex
import sys
import time
from pathlib import Path

import numpy as np


def configure_parser(p) -> None:
    """Add the ``train-segmenter`` arguments to an argparse parser."""
    p.description = __doc__
    p.add_argument("--out", required=True, help="weights file to write (MODEL_CARD.md goes beside it)")
    p.add_argument("--seed", type=int, default=0, help="seeds the weights, the batches and the data")
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--rows", type=int, default=128, help="rows of the random window of each crop")
    p.add_argument("--lr", type=float, default=None, help="max learning rate (default 2e-3, "
                                                          "3e-4 when fine-tuning)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--pole_weight", type=float, default=1.0,
                   help="loss factor on the rows at either side of a cell's pole (1: none)")
    p.add_argument("--positions", type=int, default=160,
                   help="generated positions (one tuning seed each) to cut crops from")
    p.add_argument("--families", default="",
                   help="comma-separated scenario families, and 'combined' (several of them at "
                        "once) (default: all but the held-out ones, and combined)")
    p.add_argument("--box_margin", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="generated crops start a random distance in [LO, HI] pixels before the "
                        "closed end, as detected boxes do (default 0 3); 0 0: at the end")
    p.add_argument("--validation_positions", type=int, default=24)
    p.add_argument("--finetune", default=None,
                   help="folder of containers with segmentation/<label_name> and trench crops")
    p.add_argument("--label_name", default="cells", help="segmentation/<name> to fine-tune on")
    p.add_argument("--channel", default="", help="crops channel (default: the one Segment used)")
    p.add_argument("--init", default=None, help="weights to start from (default when fine-tuning: "
                                               "the shipped ones)")
    p.add_argument("--no_progress", action="store_true")


def main(args) -> int:
    """Train (or fine-tune) the U-Net and write the weights and their model card."""
    import torch
    from tqdm import tqdm

    from ..synthetic.families import FAMILIES, seeds
    from .torch_model import DEFAULT_WEIGHTS, load_weights, save_weights
    from .training import (BOX_MARGIN, COMBINED, HELDOUT_FAMILIES, TRAINING_FAMILIES,
                           container_examples, evaluate_model, generated_examples, train,
                           write_model_card)

    t0 = time.time()
    torch.set_num_threads(args.threads)
    families = [f for f in args.families.split(",") if f] or \
        [f for f in FAMILIES if f not in HELDOUT_FAMILIES] + [COMBINED]
    unknown = sorted(set(families) - set(FAMILIES) - set(TRAINING_FAMILIES))
    if unknown:
        print(f"error: unknown families {unknown}; known: {', '.join(FAMILIES)} and "
              f"{', '.join(TRAINING_FAMILIES)} (training families: several of the others at "
              "once; dark_lumen's faintest cells; several at once out of focus)", file=sys.stderr)
        return 2
    if not args.pole_weight > 0:  # refused now, not after minutes of making data
        print(f"error: --pole_weight must be positive (1: the poles weigh as any pixel), got "
              f"{args.pole_weight}", file=sys.stderr)
        return 2
    margin_range = tuple(args.box_margin) if args.box_margin else BOX_MARGIN
    # made now, not after minutes of training: a missing folder lost the run at the end
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    # Validation on held-out seeds far from those the benchmark uses first.
    val_seeds = seeds("heldout", args.validation_positions, start=900_000 + args.seed * 1000)
    with tqdm(total=args.validation_positions, desc="validation crops",
              disable=args.no_progress) as bar:
        val = generated_examples(families, val_seeds, progress=bar.update,
                                 box_margin=margin_range)
    init = args.init
    if args.finetune:
        data = container_examples(args.finetune, args.label_name, args.channel)
        init = init or DEFAULT_WEIGHTS
        described = (f"Fine-tuned from `{init}` on {len(data[0])} crops of the containers in "
                     f"`{args.finetune}` (`segmentation/{args.label_name}`).")
    else:
        rng = np.random.default_rng(args.seed)
        train_seeds = sorted(rng.choice(1000, size=min(args.positions, 1000), replace=False).tolist())
        with tqdm(total=len(train_seeds), desc="training crops", disable=args.no_progress) as bar:
            data = generated_examples(families, train_seeds, progress=bar.update,
                                      box_margin=margin_range)
        started = (f" Started from the weights `{init}` (their own card tells how they were made)."
                   if init else "")
        described = (f"{len(data[0])} crops ({np.sum(data[2] == 'phase')} phase-like, "
                     f"{np.sum(data[2] == 'fluorescence')} fluorescence) cut from "
                     f"{len(train_seeds)} generated positions (512 x 256, 3 frames) of the "
                     f"families {', '.join(families)} on tuning seeds (0-999) drawn with seed "
                     f"{args.seed}; families never trained on: {', '.join(HELDOUT_FAMILIES)}. "
                     f"Every crop starts a random distance of {margin_range[0]:g}-{margin_range[1]:g} "
                     f"px (uniform) before its trench's closed end, as detected boxes do; the "
                     f"labels move with it.{started}")
    lr = args.lr or (3e-4 if init else 2e-3)
    model, config, losses = train(*data, steps=args.steps, batch_size=args.batch_size,
                                  rows=args.rows, lr=lr,
                                  seed=args.seed, threads=args.threads, init=init,
                                  pole_weight=args.pole_weight, progress=not args.no_progress)
    meta = {"seed": args.seed, "steps": args.steps}
    # the range of box starts the network learnt to find the closed end in
    # (fine-tuning on a lab's own crops keeps the range of the weights it starts from)
    box_margin = load_weights(init)[2].get("box_margin") if args.finetune else list(margin_range)
    if box_margin is not None and max(box_margin) > 0:
        meta["box_margin"] = box_margin
    save_weights(model, args.out, config, meta)
    exported = _export_onnx(args.out)
    metrics = evaluate_model(model, *val)
    command = "batchlib train-segmenter " + " ".join(shlex.quote(a) for a in sys.argv[2:]) \
        if len(sys.argv) > 1 and sys.argv[1] == "train-segmenter" else "train_cli.main(...)"
    card = write_model_card(args.out, {
        "date": datetime.date.today().isoformat(), "torch": torch.__version__,
        "seconds": time.time() - t0, "threads": args.threads, "command": command,
        "config": config, "n_params": sum(p.numel() for p in model.parameters()),
        "data": described + f"\n\nValidation: {len(val[0])} crops of {len(val_seeds)} held-out "
                            f"seeds ({val_seeds[0]}-{val_seeds[-1]}) of the same families.",
        "steps": args.steps, "batch_size": f"{args.batch_size} windows of {args.rows} rows",
        "lr": lr, "seed": args.seed,
        "final_loss": float(np.mean(losses[-50:])), "validation": metrics})
    for kind, m in metrics.items():
        print(f"{kind}: F1 {m['f1']:.4f}, mean IoU {m['mean_iou']:.4f}, "
              f"count within 1 {m['count_within_1']:.4f} ({m['cells']} cells)")
    print(f"wrote {args.out}{exported} and {card} in {time.time() - t0:.0f} s")
    return 0


def _export_onnx(weights) -> str:
    """Export the new weights for ONNX Runtime (what Segment runs by default); a stale
    export of earlier weights at that name is removed (it would not be used anyway)."""
    from .onnx_model import export_onnx, onnx_path

    try:
        return f", {export_onnx(weights)}"
    except ImportError as e:
        onnx_path(weights).unlink(missing_ok=True)
        print(f"note: no ONNX export ({e}; pip install onnx): Segment runs these weights on "
              "PyTorch", file=sys.stderr)
        return ""
