"""Notebook 01's from-scratch reference: a small CNN, its training recipe, and the networks trained on
100 labels per class for 100 epochs and on 1000 labels per class for 15 epochs, shipped in `checkpoints/`.

Make the shipped networks (about 5 minutes on 2 CPU cores; `--n 100` or `--n 1000` makes one budget)::

    ARIA_THREADS=2 python -m aria_utils.scratch

It also runs notebook 01's whole grid offline, one target and some draws at a time (`run_grid`): every
strategy at 20 and 1000 labels per class, the fine-tunes trained to a plateau, the small CNN from scratch on
each draw of 20 labels per class; it writes the accuracies and loss curves to `checkpoints/transfer_<target>_d<draw>.pt`
(with the fine-tuned tail of one representative run, float16, in the very similar target's draw 0)::

    ARIA_THREADS=2 python -m aria_utils.scratch --grid photo_crops --draws 0 1 2
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from .data import to_float
from .blocks import conv_bn
from .setup import repo_root
from .training import History, fit
from .transfer import (SPLITS_TUNED, cache_stages, finetune_tail, labelled_pool, linear_accuracy, load_target,
                       random_shift_flip, split_efficientnet, validation_scores)

RECIPE = {"batch_size": 64, "lr": 3e-3, "weight_decay": 5e-2, "warmup": 20}  # AdamW, cosine to 0
SHIPPED_EPOCHS = {100: 100, 1000: 15}  # labels per class of a shipped network -> its epochs (to a plateau)


def scratch_cnn(in_channels: int, n_classes: int, width: int = 16) -> nn.Sequential:
    """A small CNN sized for 28-32 px inputs (five 3 x 3 conv-BN-ReLU layers, two max-pools, global average
    pooling, dropout 0.3, linear head): the from-scratch reference, under 1 % of EfficientNet-Lite0's size.
    The conv-BN-ReLU layers are unpacked into one flat Sequential (the shipped checkpoints' layout)."""
    w = width
    return nn.Sequential(*conv_bn(in_channels, w), *conv_bn(w, w), nn.MaxPool2d(2), *conv_bn(w, 2 * w),
                         *conv_bn(2 * w, 2 * w), nn.MaxPool2d(2), *conv_bn(2 * w, 4 * w), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Dropout(0.3), nn.Linear(4 * w, n_classes))


def train_scratch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, seed: int = 0,
                  desc: str = "from scratch", progress: bool = True) -> History:
    """`RECIPE` for `steps` steps on uint8 images, each batch mirrored and shifted by up to 2 px;
    cross-entropy with label smoothing 0.1."""
    aug = torch.Generator().manual_seed(seed)

    def loss_fn(m: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(m(to_float(random_shift_flip(xb, 2, aug))), yb, label_smoothing=0.1)

    return fit(model, [x, y], loss_fn, steps=steps, seed=seed, desc=desc, progress=progress, **RECIPE)


def shipped_path(target: str, n: int = 1000) -> Path:
    return repo_root() / "checkpoints" / f"scratch_{target}_n{n}.pt"


def scratch_config(target: str, steps: int, seed: int, n: int = 1000) -> dict[str, Any]:
    """What a shipped network was trained with (stored in the file and checked on load)."""
    return {"arch": "scratch_cnn(width=16)", "recipe": RECIPE, "target": target, "n": n,
            "pool_seed": 0, "steps": steps, "seed": seed}


def load_shipped_scratch(target: str, in_channels: int, n_classes: int, n: int = 1000) -> tuple[nn.Module, dict[str, Any]]:
    """The shipped from-scratch network for `target` and n labels per class, in eval mode, and its metadata."""
    if n not in SHIPPED_EPOCHS:
        raise ValueError(f"No network is shipped for n={n} labels per class; the shipped ones: {sorted(SHIPPED_EPOCHS)}.")
    path = shipped_path(target, n)
    if not path.exists():
        raise FileNotFoundError(f"No checkpoint at {path}; make it with `python -m aria_utils.scratch --n {n}`.")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    config = blob.get("config")
    if not isinstance(config, dict) or config.get("target") != target or config.get("n") != n:
        raise CheckpointError(f"{path} holds another network ({config}); retrain it with "
                              f"`python -m aria_utils.scratch --n {n}`.")
    model = scratch_cnn(in_channels, n_classes)
    meta = load_checkpoint(path, model)
    return model.eval(), {**meta, "config": config}


GRID = {"size": 64, "grid": 4, "n_test": 200, "budgets": (20, 1000), "scratch_steps": 300,
        "tune_steps": {20: 100, 1000: 624}, "Cs": (0.001, 0.01, 0.1, 1.0), "mirrors_up_to": 100}
TUNED = {"photo_crops": (1,), "fashion_mnist": (1, 2, 3)}  # stages fine-tuned: "a few" / "a larger number"


def grid_path(target: str, draw: int) -> Path:
    return repo_root() / "checkpoints" / f"transfer_{target}_d{draw}.pt"


def _linear_cell(P: dict, y: torch.Tensor, test: dict, test_m: dict, y_test: torch.Tensor, mirrors: dict | None,
                 every_stage: bool) -> dict:
    """(a), (a') and their C-tuned forms on one labelled set: pooled features `P[stage]`, labels `y`."""
    val = validation_scores(P, y, GRID["Cs"])
    s_fixed = max((k for k in val if k[1] == 0.01), key=val.get)[0]  # the stage chosen at the notebook's C
    s_tuned, c_tuned = max(val, key=val.get)  # stage and C chosen together
    c_head = max((k for k in val if k[0] == "head"), key=val.get)[1]

    def acc(s: str, C: float = 0.01) -> float:
        m = (mirrors[s], test_m[s]) if mirrors else ()
        return linear_accuracy(P[s], y, test[s], y_test, *m, C=C)

    stages = list(P) if every_stage else sorted({"head", s_fixed})
    out = {"stages": {s: acc(s) for s in stages}, "chosen": s_fixed,
           "val": {f"{s}|{c}": v for (s, c), v in val.items()},
           "top_C": c_head, "top_tuned": acc("head", c_head), "chosen_tuned_stage": s_tuned,
           "chosen_tuned_C": c_tuned, "chosen_tuned": acc(s_tuned, c_tuned)}
    out["top"], out["best_stage"] = out["stages"]["head"], out["stages"][s_fixed]
    return out


def run_grid(target: str, draws: list[int], command: str, progress: bool = True) -> list[Path]:
    """Notebook 01's grid on one target for the given draws; one results file per draw (see the module doc)."""
    from .data import to_float
    from .pretrained import load_efficientnet_lite

    t_start = time.perf_counter()
    source, _ = load_efficientnet_lite(0)
    d = load_target(target)
    size, grid, n_min, n_max = GRID["size"], GRID["grid"], *GRID["budgets"]
    pool = labelled_pool(d, GRID["budgets"], GRID["n_test"], draws=max(draws) + 1)
    splits = [SPLITS_TUNED[s] for s in TUNED[target]]
    n_classes = len(d["classes"])
    h_lab, p_lab = cache_stages(source, pool["x_lab"], size, splits, grid=grid)  # 1000 labels per class
    h_test, p_test = cache_stages(source, pool["x_test"], size, splits, grid=grid)
    p_test_m = cache_stages(source, pool["x_test"].flip(-1), size, [], grid=grid)[1]
    y_lab, y_test = pool["y_lab"], pool["y_test"]
    t_feat = time.perf_counter() - t_start
    paths = []
    for draw in draws:
        t0 = time.perf_counter()
        x20, y20 = pool["draws"][draw]
        h20, p20 = cache_stages(source, x20, size, splits, grid=grid)
        p20_m = cache_stages(source, x20.flip(-1), size, [], grid=grid)[1]
        res: dict[str, Any] = {"target": target, "draw": draw, "grid": GRID, "tuned": list(TUNED[target])}
        pix = {"x": to_float(x20).flatten(1), "m": to_float(x20.flip(-1)).flatten(1),
               "t": to_float(pool["x_test"]).flatten(1), "tm": to_float(pool["x_test"].flip(-1)).flatten(1)}
        cell20 = _linear_cell(p20, y20, p_test, p_test_m, y_test, p20_m, every_stage=True)
        cell20["pixels"] = linear_accuracy(pix["x"], y20, pix["t"], y_test, pix["m"], pix["tm"])
        torch.manual_seed(0)  # as the notebook's live network (draw 0 is the same run)
        net = scratch_cnn(to_float(x20[:1]).shape[1], n_classes)
        hist = train_scratch(net, x20, y20, GRID["scratch_steps"], seed=0, desc=f"{target} d{draw}: scratch n=20",
                             progress=progress)
        net.eval()
        with torch.no_grad():
            cell20["scratch"] = (net(to_float(pool["x_test"])).argmax(-1) == y_test).float().mean().item()
        cell20["scratch_loss"] = [round(v, 4) for v in hist.loss]
        cell20["scratch_first_layer"] = net[0].weight.detach().flatten().tolist()
        # the same 1000 labels per class in every draw (only the fine-tunes' seeds differ): linear ones in draw 0
        cell1000 = _linear_cell(p_lab, y_lab, p_test, p_test_m, y_test, None, every_stage=True) if draw == 0 else {}
        if cell1000:
            cell1000["pixels"] = linear_accuracy(to_float(pool["x_lab"]).flatten(1), y_lab, pix["t"], y_test)
        keep = None
        for n, cell, h, y in ((n_min, cell20, h20, y20), (n_max, cell1000, h_lab, y_lab)):
            cell["tune"] = {}
            for s in TUNED[target]:
                k = SPLITS_TUNED[s]
                model, hist = finetune_tail(source, k, h[k], y, GRID["tune_steps"][n], n_classes=n_classes, seed=draw,
                                            warmup=10 if n == n_min else 30,
                                            desc=f"{target} d{draw}: last {s}, n={n}", progress=progress)
                tail = split_efficientnet(model, k)[1]
                with torch.no_grad():
                    a = (tail(h_test[k]).argmax(-1) == y_test).float().mean().item()
                cell["tune"][str(s)] = {"acc": a, "loss": [round(v, 4) for v in hist.loss], "epochs": hist.epochs,
                                        "seconds": hist.seconds}
                if target == "photo_crops" and draw == 0 and n == n_max and s == 1:
                    keep = tail.half()
        res["n20"], res["n1000"] = cell20, cell1000
        meta = {"results": res, "command": command, "seconds": time.perf_counter() - t0 + t_feat,  # features: once
                "trained_on": f"{platform.machine()} CPU, {torch.get_num_threads()} threads, torch {torch.__version__}",
                "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "seed": draw}
        config = {"target": target, "draw": draw, "grid": GRID, "kept": "tail of last 1, n=1000" if keep else None}
        path = save_checkpoint(grid_path(target, draw), keep if keep is not None else nn.Module(), config, meta)
        print(f"[grid] {target} draw {draw}: {meta['seconds']:.0f} s -> {path} ({path.stat().st_size / 1e6:.2f} MB)")
        t_feat = 0.0  # the frozen features are computed once per process, counted in its first draw
        paths.append(path)
    return paths


def load_grid(target: str, draw: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The results of one draw of `run_grid` (`meta["results"]`) and the file's metadata."""
    path = grid_path(target, draw)
    if not path.exists():
        raise FileNotFoundError(f"No results at {path}; make them with "
                                f"`python -m aria_utils.scratch --grid {target} --draws {draw}`.")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    return blob["meta"]["results"], {**blob["meta"], "config": blob["config"], "state_dict": blob["state_dict"]}


def main(argv: list[str] | None = None) -> int:
    """Train the small CNN on n labels per class of each offline target and save it in `checkpoints/`."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", choices=sorted(SHIPPED_EPOCHS), default=sorted(SHIPPED_EPOCHS),
                    help="labels per class (default: every shipped budget)")
    ap.add_argument("--epochs", type=int, default=None, help="default: SHIPPED_EPOCHS[n]")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--grid", choices=sorted(TUNED), default=None, help="run notebook 01's grid on this target")
    ap.add_argument("--draws", type=int, nargs="+", default=[0, 1, 2], help="with --grid: the draws (seeds) to run")
    args = ap.parse_args(argv)
    command = ("python -m aria_utils.scratch " + " ".join(argv if argv is not None else sys.argv[1:])).strip()
    if args.grid:
        torch.set_num_threads(int(os.environ.get("ARIA_THREADS", 2)))
        run_grid(args.grid, args.draws, command)
        return 0
    if args.epochs is not None and args.epochs < 1:
        ap.error(f"--epochs must be at least 1 (got {args.epochs}).")
    torch.set_num_threads(int(os.environ.get("ARIA_THREADS", 2)))
    for target in ("photo_crops", "fashion_mnist"):
        d = load_target(target)  # once per target, for every budget
        for n in args.n:
            epochs = SHIPPED_EPOCHS[n] if args.epochs is None else args.epochs
            pool = labelled_pool(d, [n], 1)
            x, y = pool["x_lab"], pool["y_lab"]
            steps = epochs * (len(x) // RECIPE["batch_size"])
            torch.manual_seed(args.seed)
            model = scratch_cnn(to_float(x[:1]).shape[1], len(d["classes"]))
            hist = train_scratch(model, x, y, steps, seed=args.seed, desc=f"{target}, n={n}")
            meta = {"seconds": hist.seconds, "loss": hist.loss,
                    "command": ("python -m aria_utils.scratch "
                                + " ".join(argv if argv is not None else sys.argv[1:])).strip(),
                    "trained_on": f"{platform.machine()} CPU, {torch.get_num_threads()} threads, {hist.steps} steps "
                                  f"({epochs} epochs) in {hist.seconds:.0f} s wall",
                    "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": str(torch.__version__)}
            path = save_checkpoint(shipped_path(target, n), model, scratch_config(target, hist.steps, args.seed, n),
                                   meta)
            print(f"[scratch] {target}, n={n}: {hist.steps} steps in {hist.seconds:.0f} s, final loss "
                  f"{hist.loss[-1]:.4f} -> {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
