"""Other pretext tasks (notebook 04): rotation prediction (Gidaris et al., 2018: each image is turned by 0, 90,
180 or 270 degrees and the network predicts which; recognising "upright" needs the object's shape), relative
position (Doersch et al., 2015), and a pretext unrelated to the garments (which photograph is behind them).

The networks trained longer, and the fine-tuning of the shipped SimCLR against training from scratch over seeds,
are shipped in `checkpoints/` (about 4 minutes on 2 CPU cores)::

    ARIA_THREADS=2 python -m aria_utils.pretext relpos --epochs 20
    ARIA_THREADS=2 python -m aria_utils.pretext background --epochs 3
    ARIA_THREADS=2 python -m aria_utils.pretext finetune --seeds 3
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn as nn

from .checkpoints import load_checkpoint, save_checkpoint, train_or_load
from .data import to_float
from .finetune import Classifier
from .representation import ConvEncoder
from .setup import cpu_model, repo_root
from .training import History, RunConfig, accuracy, classification_loss, fit

N_ROTATIONS = 4


def rotate_batch(x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Float `[B, C, H, W]` (square) -> each image turned by k * 90 degrees, and the labels k `[B]` in {0, 1, 2, 3}."""
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"rotate_batch needs square images, got {tuple(x.shape[-2:])}.")
    k = torch.randint(0, N_ROTATIONS, (len(x),), generator=generator)
    out = x.clone()
    for r in range(1, N_ROTATIONS):
        sel = (k == r).to(x.device)
        out[sel] = torch.rot90(x[sel], r, dims=(-2, -1))
    return out, k.to(x.device)


@dataclass(frozen=True)
class RotationConfig(RunConfig):
    """What defines a rotation-prediction run (its cache key)."""

    KIND: ClassVar[str] = "rotation"
    dim: int = 128
    width: int = 16
    size: int = 32
    epochs: float = 2.0
    weight_decay: float = 1e-4


def make_rotation_net(cfg: RotationConfig) -> Classifier:
    """`ConvEncoder` + a linear layer to the 4 rotations, seeded by `cfg.seed`."""
    torch.manual_seed(cfg.seed)
    return Classifier(ConvEncoder(cfg.dim, cfg.width, cfg.size), cfg.dim, N_ROTATIONS)


def rotation_loss(model: nn.Module, xb: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """A `fit` loss: cross-entropy of the predicted rotation, with the batch accuracy as a log."""
    return classification_loss(model, *rotate_batch(to_float(xb)))


def train_rotation(cfg: RotationConfig, images: torch.Tensor, seconds: float | None = None,
                   progress: bool = True) -> tuple[Classifier, dict[str, Any]]:
    """Train-or-load rotation prediction on unlabelled images (cache `rotation-<hash>`). Returns the network
    (its `.encoder` is the representation) and the metadata."""
    model = make_rotation_net(cfg)

    def train(m: nn.Module) -> dict[str, Any]:
        torch.manual_seed(cfg.seed)
        hist = fit(m, [images], rotation_loss, epochs=cfg.epochs, seconds=seconds, batch_size=cfg.batch_size,
                   lr=cfg.lr, weight_decay=cfg.weight_decay, seed=cfg.seed, desc="rotation", progress=progress)
        return {"history": hist.to_dict()}

    meta = train_or_load("rotation", cfg.to_dict(), model, train)
    return model.eval(), meta


# ----------------------------------------------------------------------------- relative position (Doersch et al.)

# The 8 neighbours of the centre cell of a 3 x 3 grid, as (row, column) steps; the label is the index here.
NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def grid_patch(x: torch.Tensor, row: int | torch.Tensor, col: int | torch.Tensor, patch: int, cell: int,
               offset: torch.Tensor) -> torch.Tensor:
    """The `patch`-pixel patch of cell (`row`, `col`) (ints, or one per image `[B]`) of a 3 x 3 grid of
    `cell`-pixel cells centred in `x` `[B, C, H, W]`, at `offset` `[B, 2]` (row, column) pixels inside the cell.
    Returns `[B, C, patch, patch]`."""
    origin = (x.shape[-1] - 3 * cell) // 2
    r0 = origin + row * cell + offset[:, 0]
    c0 = origin + col * cell + offset[:, 1]
    ar = torch.arange(patch)
    rows = (r0[:, None] + ar)[:, None, :, None].expand(-1, x.shape[1], -1, patch)          # [B, C, p, p]
    cols = (c0[:, None] + ar)[:, None, None, :].expand(-1, x.shape[1], patch, -1)
    b = torch.arange(len(x))[:, None, None, None]
    ch = torch.arange(x.shape[1])[None, :, None, None]
    return x[b, ch, rows, cols]


def relative_position_batch(x: torch.Tensor, patch: int = 8, cell: int = 10,
                            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Doersch et al. (2015) on float `[B, C, H, W]`: the centre patch of a 3 x 3 grid, one of its 8 neighbours
    drawn at random, and the neighbour's label in {0, ..., 7} (`NEIGHBOURS`). Each patch sits at a random offset
    of 0 to `cell - patch` pixels in its cell, so the gap between patches varies and edges do not give the answer.
    Returns `(centre [B, C, p, p], neighbour [B, C, p, p], label [B])`."""
    if 3 * cell > min(x.shape[-2:]) or patch > cell:
        raise ValueError(f"a 3 x 3 grid of {cell}-px cells with {patch}-px patches does not fit {tuple(x.shape[-2:])}.")
    B, jitter = len(x), cell - patch + 1
    label = torch.randint(0, len(NEIGHBOURS), (B,), generator=generator)
    off_c, off_n = torch.randint(0, jitter, (2, B, 2), generator=generator)
    centre = grid_patch(x, 1, 1, patch, cell, off_c)
    steps = torch.tensor(NEIGHBOURS)[label]                                               # [B, 2]
    neighbour = grid_patch(x, 1 + steps[:, 0], 1 + steps[:, 1], patch, cell, off_n)
    return centre, neighbour, label


class RelativePositionNet(nn.Module):
    """A patch encoder `f` (shared by both patches) and a small head on `[f(centre), f(neighbour)]` -> 8 logits."""

    def __init__(self, dim: int = 64, width: int = 16, patch: int = 8) -> None:
        super().__init__()
        self.encoder = ConvEncoder(dim, width, patch)
        self.head = nn.Sequential(nn.Linear(2 * dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, len(NEIGHBOURS)))

    def forward(self, centre: torch.Tensor, neighbour: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.encoder(centre), self.encoder(neighbour)], dim=1))


class GridFeatures(nn.Module):
    """The representation of a relative-position encoder for a whole image: the codes of the 9 patches of the
    grid (each at the middle of its cell), concatenated in reading order: `[B, 1, H, W]` -> `[B, 9 * dim]`."""

    def __init__(self, encoder: nn.Module, patch: int = 8, cell: int = 10) -> None:
        super().__init__()
        self.encoder, self.patch, self.cell = encoder, patch, cell

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        off = torch.full((len(x), 2), (self.cell - self.patch) // 2)
        patches = [grid_patch(x, r, c, self.patch, self.cell, off) for r in range(3) for c in range(3)]
        codes = self.encoder(torch.cat(patches))                                           # [9B, dim]
        return codes.reshape(9, len(x), -1).permute(1, 0, 2).flatten(1)


@dataclass(frozen=True)
class RelativePositionConfig(RunConfig):
    """What defines a relative-position run (its cache key)."""

    KIND: ClassVar[str] = "relative-position"
    dim: int = 64
    width: int = 16
    patch: int = 8
    cell: int = 10
    epochs: float = 2.0
    weight_decay: float = 1e-4


def make_relative_position_net(cfg: RelativePositionConfig) -> RelativePositionNet:
    """The patch encoder and head, seeded by `cfg.seed`."""
    torch.manual_seed(cfg.seed)
    return RelativePositionNet(cfg.dim, cfg.width, cfg.patch)


def relative_position_loss_fn(patch: int = 8, cell: int = 10) -> Any:
    """A `fit` loss: cross-entropy of the neighbour's predicted position, with the batch accuracy as a log."""
    def loss_fn(model: nn.Module, xb: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        c, n, y = relative_position_batch(to_float(xb), patch, cell)
        logits = model(c, n)
        return nn.functional.cross_entropy(logits, y), {"acc": (logits.argmax(-1) == y).float().mean().item()}
    return loss_fn


@torch.no_grad()
def relative_position_accuracy(model: RelativePositionNet, images: torch.Tensor, patch: int = 8, cell: int = 10,
                               seed: int = 0, batch_size: int = 1000) -> float:
    """8-way accuracy on held-out images (one random neighbour each, seeded draws); chance is 1/8."""
    model.eval()
    g, hits = torch.Generator().manual_seed(seed), 0
    for i in range(0, len(images), batch_size):
        c, n, y = relative_position_batch(to_float(images[i: i + batch_size]), patch, cell, generator=g)
        hits += int((model(c, n).argmax(-1) == y).sum())
    return hits / len(images)


def train_relative_position(cfg: RelativePositionConfig, images: torch.Tensor, seconds: float | None = None,
                            progress: bool = True, cache: bool = True) -> tuple[RelativePositionNet, dict[str, Any]]:
    """Train-or-load the relative-position pretext on unlabelled images (cache `relpos-<hash>`; `cache=False`:
    always train, save nothing). Returns the network (its `.encoder` codes one patch; `GridFeatures(net.encoder)`
    codes an image) and the metadata."""
    model = make_relative_position_net(cfg)

    def train(m: nn.Module) -> dict[str, Any]:
        torch.manual_seed(cfg.seed)
        hist = fit(m, [images], relative_position_loss_fn(cfg.patch, cfg.cell), epochs=cfg.epochs, seconds=seconds,
                   batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay, seed=cfg.seed,
                   desc="relative position", progress=progress)
        return {"history": hist.to_dict()}

    if not cache:
        return model.eval(), {**train(model), "loaded": False}
    meta = train_or_load("relpos", cfg.to_dict(), model, train)
    return model.eval(), meta


# ----------------------------------------------------------------------------- a pretext unrelated to the classes

@dataclass(frozen=True)
class BackgroundConfig(RunConfig):
    """Which photograph is behind the garment (8-way): a label that comes free with the scenes, like a pretext's,
    and on which the garment's class does not depend."""

    KIND: ClassVar[str] = "background"
    dim: int = 128
    width: int = 16
    size: int = 32
    n_photos: int = 8
    weight_decay: float = 1e-4


def make_background_net(cfg: BackgroundConfig) -> Classifier:
    """`ConvEncoder` + a linear layer to the photographs, seeded by `cfg.seed`."""
    torch.manual_seed(cfg.seed)
    return Classifier(ConvEncoder(cfg.dim, cfg.width, cfg.size), cfg.dim, cfg.n_photos)


def train_background(cfg: BackgroundConfig, images: torch.Tensor, photo: torch.Tensor, seconds: float | None = None,
                     progress: bool = True) -> tuple[Classifier, dict[str, Any]]:
    """Train the background pretext (cross-entropy on the photograph's index `photo` [N]); no cache."""
    model = make_background_net(cfg)
    torch.manual_seed(cfg.seed)
    hist = fit(model, [images, photo], lambda m, xb, yb: classification_loss(m, to_float(xb), yb), epochs=cfg.epochs,
               seconds=seconds, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay, seed=cfg.seed,
               desc="background", progress=progress)
    return model.eval(), {"history": hist.to_dict()}


# ----------------------------------------------------------------------------- the protocol, computed once

class FrozenEval:
    """Notebook 04's use of the shared protocol: the frozen features of each encoder, and its scores, computed once
    per weights and cached on disk (`compute_or_load`, keyed by `weights_tag`), so that the figures, the table and
    the ledger share them and a re-run recomputes nothing.

    Scores: the protocol's (`probe_n10`, ..., `knn_all`) and, for the noise of the few-label columns, the same with
    `draws - 1` other labelled pools (`probe_n10_d1`, ...; `n10` itself is draw 0). `few=True` scores the few-label
    pools only (the cheap way for a representation that needs no `all` column).
    """

    def __init__(self, data: Any, draws: int = 3, tag: str = "04") -> None:
        from .protocol import pool_draws

        self.data, self.tag, self.draws = data, tag, draws
        self.extra = {k: v for n in (10, 100) for k, v in pool_draws(data, n, draws).items() if not k.endswith("_d0")}
        self._memo: dict[str, dict[str, torch.Tensor]] = {}

    def _data(self, few: bool) -> Any:
        from dataclasses import replace
        return replace(self.data, pools={k: v for k, v in self.data.pools.items() if not (few and k == "all")})

    def key(self, encode: Any, few: bool) -> dict[str, Any]:
        """The cache key of an encoder's results: its weights (or "pixels"), the pools, the data's size."""
        name = weights_tag(encode) if isinstance(encode, nn.Module) else getattr(encode, "__name__", str(encode))
        return {"weights": name, "few": few, "draws": self.draws, "n_test": len(self.data.x_test),
                "pools": {k: len(v) for k, v in self.data.pools.items()}}

    def features(self, encode: Any, few: bool = False) -> dict[str, torch.Tensor]:
        """`protocol.frozen_features` of the protocol's pools and the extra draws (pixels: never cached)."""
        from .checkpoints import compute_or_load
        from .protocol import frozen_features

        key = self.key(encode, few)
        memo = repr(sorted(key.items()))
        if memo not in self._memo:
            compute = lambda: frozen_features(encode, self._data(few), tuple(self.extra.values()))  # noqa: E731
            self._memo[memo] = (compute() if not isinstance(encode, nn.Module) else
                                compute_or_load(f"{self.tag}-features", key, compute))
        return self._memo[memo]

    def scores(self, encode: Any, few: bool = False) -> dict[str, float]:
        """The protocol's scores and those of the other draws, cached."""
        from .checkpoints import compute_or_load
        from .protocol import evaluate_features

        d = self._data(few)
        pools = {**d.pools, **self.extra}
        return compute_or_load(f"{self.tag}-scores", self.key(encode, few),
                               lambda: evaluate_features(self.features(encode, few), d, pools))

    def spread(self, scores: dict[str, float], col: str) -> tuple[float, float]:
        """Mean and standard deviation of a few-label column over the draws of the labelled pool."""
        vals = [scores[col]] + [scores[f"{col}_d{i}"] for i in range(1, self.draws)]
        return float(sum(vals) / len(vals)), float(torch.tensor(vals).std(unbiased=False))


# ----------------------------------------------------------------------------- shipped networks and results

FT_STEPS = {10: 150, 100: 200}               # fine-tuning steps (the notebook's recipe)
SCRATCH_STEPS = {10: (150, 300), 100: (200, 400)}   # from scratch: the same steps, and twice as many (plateau)


def shipped_path(name: str) -> Path:
    """`checkpoints/<name>.pt`."""
    return repo_root() / "checkpoints" / f"{name}.pt"


def weights_tag(model: nn.Module) -> str:
    """A short hash of a module's weights and buffers: a cache key for results derived from them."""
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def load_shipped(name: str) -> tuple[nn.Module, dict[str, Any]]:
    """A network shipped by this module's CLI (`pretext_relpos_*`, `pretext_background_*`, `simclr_finetune_*`),
    in eval mode, and its metadata (command, seconds, machine, history, results)."""
    path = shipped_path(name)
    if not path.exists():
        raise FileNotFoundError(f"No checkpoint at {path}; make it with the commands in `aria_utils.pretext`'s docstring.")
    config = torch.load(path, map_location="cpu", weights_only=True)["config"]
    kind = config["kind"]
    fields = {k: v for k, v in config.items() if k != "kind"}
    if kind == "relative-position":
        model: nn.Module = make_relative_position_net(RelativePositionConfig(**fields))
    elif kind == "background":
        model = make_background_net(BackgroundConfig(**fields))
    elif kind == "finetune":
        model = Classifier(ConvEncoder(), 128, 10)
    else:
        raise ValueError(f"{path}: unknown kind {kind!r}.")
    meta = load_checkpoint(path, model)
    return model.eval(), {**meta, "config": config}


def _machine(threads: int) -> dict[str, Any]:
    return {"threads": threads, "torch": str(torch.__version__), "cpu": cpu_model()}


def _small(hist: History, every: int) -> dict[str, Any]:
    d = {k: v for k, v in hist.to_dict().items() if k not in ("loss", "logs")}
    return {**d, "loss_every": every, "loss": hist.loss[::every]}


def _finetune_seeds(seeds: int, progress: bool) -> tuple[nn.Module, dict[str, Any]]:
    """The shipped SimCLR fine-tuned, and the same encoder from scratch, on 10 and 100 labels per class, `seeds`
    seeds each; the fine-tuned network of seed 0 on 10 labels per class is the one kept."""
    from . import finetune as FT
    from .representation import load_shipped_simclr

    os.environ["ARIA_SPEED"] = "full"                       # the full test set
    from .protocol import load_scene_data
    data = load_scene_data()
    simclr, info = load_shipped_simclr()
    results: dict[str, Any] = {"finetune": {}, "scratch": {}}
    curves: dict[str, Any] = {}
    kept = Classifier(ConvEncoder(), 128, 10)
    for n, steps in FT_STEPS.items():
        bs = min(128, 10 * n)
        results["finetune"][str(n)] = []
        results["scratch"][str(n)] = {str(s): [] for s in SCRATCH_STEPS[n]}
        for seed in range(seeds):
            with tempfile.TemporaryDirectory() as d:        # train_or_load keeps the network there
                os.environ["ARIA_CACHE"] = d
                acc, hist = FT.train_classifier_run(simclr.encoder, n, data, steps=steps, batch_size=bs, lr=5e-3,
                                                    encoder_lr=3e-4, augment_size=32, seed=seed, progress=progress,
                                                    config={"init": info["finished"]})
                if n == 10 and seed == 0:
                    load_checkpoint(next(Path(d).glob("classifier-n10-*.pt")), kept)
            results["finetune"][str(n)].append(acc)
            if seed == 0:
                curves[f"finetune_n{n}"] = _small(hist, 5)
            for s in SCRATCH_STEPS[n]:
                torch.manual_seed(seed)
                acc, hist = FT.train_classifier_run(ConvEncoder(), n, data, steps=s, batch_size=bs, lr=2e-3,
                                                    augment_size=32, seed=seed, progress=progress)
                results["scratch"][str(n)][str(s)].append(acc)
                if seed == 0:
                    curves[f"scratch_n{n}_{s}"] = _small(hist, 5)
            print(f"n{n} seed {seed}: fine-tuned {results['finetune'][str(n)][-1]:.3f}, from scratch " +
                  ", ".join(f"{s} steps {results['scratch'][str(n)][str(s)][-1]:.3f}" for s in SCRATCH_STEPS[n]))
    kept_acc = accuracy(kept.eval(), data.x_test, data.y_test, 500, transform=to_float)
    return kept, {"results": results, "curves": curves, "kept": {"n": 10, "seed": 0, "test_acc": kept_acc},
                  "ft_steps": FT_STEPS, "scratch_steps": SCRATCH_STEPS, "simclr": info["finished"]}


def _cli(argv: list[str] | None = None) -> int:
    """`relpos --epochs E`, `background --epochs E`, `finetune --seeds S`: see the module's docstring."""
    ap = argparse.ArgumentParser(prog="python -m aria_utils.pretext")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for cmd, epochs in (("relpos", 20.0), ("background", 3.0)):
        sub.add_parser(cmd).add_argument("--epochs", type=float, default=epochs)
    sub.add_parser("finetune").add_argument("--seeds", type=int, default=3)
    for p in sub.choices.values():
        p.add_argument("--out", type=Path, default=None)
        p.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    threads = int(os.environ.get("ARIA_THREADS", "2"))
    torch.set_num_threads(threads)
    from .protocol import SCENE_TRAIN_PER_CLASS, scene_backgrounds, scene_images

    start = time.time()
    if args.cmd == "finetune":
        command = f"ARIA_THREADS={threads} python -m aria_utils.pretext finetune --seeds {args.seeds}"
        model, info = _finetune_seeds(args.seeds, not args.quiet)
        config, name = {"kind": "finetune", "seeds": args.seeds}, "simclr_finetune_seeds"
    else:
        images = scene_images("train", SCENE_TRAIN_PER_CLASS)[0]
        command = f"ARIA_THREADS={threads} python -m aria_utils.pretext {args.cmd} --epochs {args.epochs:g}"
        if args.cmd == "relpos":
            cfg: Any = RelativePositionConfig(epochs=args.epochs, speed="checkpoint")
            model, meta = train_relative_position(cfg, images, progress=not args.quiet, cache=False)
        else:
            cfg = BackgroundConfig(epochs=args.epochs, speed="checkpoint")
            model, meta = train_background(cfg, images, scene_backgrounds("train", SCENE_TRAIN_PER_CLASS),
                                           progress=not args.quiet)
        hist = History.from_dict(meta["history"])
        acc = hist.logs.get("acc", [])
        info = {"history": _small(hist, 10), "final_train_acc": sum(acc[-20:]) / max(1, len(acc[-20:]))}
        config, name = cfg.to_dict(), f"pretext_{args.cmd}_{args.epochs:g}ep"
    seconds = time.time() - start
    info.update({"command": command, "seconds": round(seconds, 1), **_machine(threads),
                 "trained_on": f"CPU, {threads} thread(s), {seconds:.0f} s wall",
                 "finished": time.strftime("%Y-%m-%d %H:%M", time.gmtime())})
    out = args.out or shipped_path(name)
    save_checkpoint(out, model, config, info)
    print(f"saved {out} ({out.stat().st_size / 1e6:.2f} MB) in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(_cli())
