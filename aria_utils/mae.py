"""A masked autoencoder (MAE, He et al. 2021) in miniature for small grey images, and its training driver.

Notebook 05 writes patchify, the random masking, the decoder's input and the masked-patch loss by hand
and shows that they equal the functions here. Shapes: B batch, L = (img / p)^2 patches, p patch side,
C channels, d encoder width, d_dec decoder width, len_keep visible patches per image.

Reproduce the shipped files (two CPU threads, `ARIA_THREADS=2`; `make checkpoints` runs them):

    python -m aria_utils.mae --data scenes --epochs 20 --decoder-depth 2        # mae_scenes.pt (normalised targets)
    # raw-pixel targets, the pictures:
    python -m aria_utils.mae --data scenes --epochs 4 --decoder-depth 2 --pixel-targets --out checkpoints/mae_scenes_pixels.pt
    python -m aria_utils.mae sweep --epochs 3                                    # mae_ratio_sweep.pt (results)
    python -m aria_utils.mae finetune --arm mae --steps 200                      # mae_finetune_mae.pt
    python -m aria_utils.mae finetune --arm scratch --steps 500                  # mae_finetune_scratch.pt
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn

from .transformer import TransformerBlock, sinusoidal_positions
from .vit import patchify, unpatchify  # the patch cutter lives with the ViT; MAE builds on it

CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"
SHIPPED_CHECKPOINT = CHECKPOINTS / "mae_scenes.pt"             # normalised-pixel targets: the representation
PIXELS_CHECKPOINT = CHECKPOINTS / "mae_scenes_pixels.pt"       # raw-pixel targets: the pictures
SWEEP_RESULTS = CHECKPOINTS / "mae_ratio_sweep.pt"             # mask ratios 0.5 / 0.75 / 0.9 (results only)
FINETUNE_RESULTS = {arm: CHECKPOINTS / f"mae_finetune_{arm}.pt" for arm in ("mae", "scratch")}
# Pixel statistics of the training images (pixels in [0, 1]): inputs are standardised with them.
FASHION_MEAN, FASHION_STD = 0.2860, 0.3530       # centred Fashion-MNIST
SCENE_MEAN, SCENE_STD = 0.3344, 0.2102           # the scene benchmark (`protocol.scene_images("train", 2000)`)


# helpers


def random_masking(z: torch.Tensor, mask_ratio: float, noise: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample random masking by shuffling (the MAE paper's way).

    z `[B, L, d]` -> (visible tokens `[B, len_keep, d]`, mask `[B, L]` with 1 = masked, ids_restore `[B, L]`).
    Each row of `noise` `[B, L]` (uniform by default) is sorted; the `len_keep` lowest are kept.
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio={mask_ratio}: use a value in [0, 1).")
    B, L, d = z.shape
    len_keep = int(L * (1 - mask_ratio))
    if noise is None:
        noise = torch.rand(B, L, device=z.device)
    ids_shuffle = torch.argsort(noise, dim=1)  # ascending: small noise is kept
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    visible = torch.gather(z, 1, ids_keep.unsqueeze(-1).expand(-1, -1, d))  # (B, len_keep, d)
    mask = torch.ones(B, L, device=z.device)
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)  # back in image order
    return visible, mask, ids_restore


def patch_targets(x: torch.Tensor, p: int, norm_pix: bool, eps: float = 1e-2) -> torch.Tensor:
    """Reconstruction targets `[B, L, p*p*C]`: the patches, standardised per patch when `norm_pix`."""
    t = patchify(x, p)
    if norm_pix:
        mu, var = t.mean(-1, keepdim=True), t.var(-1, keepdim=True)
        t = (t - mu) / (var + eps).sqrt()
    return t


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error per patch, averaged over the masked patches only (mask = 1)."""
    per_patch = ((pred - target) ** 2).mean(-1)  # (B, L)
    return (per_patch * mask).sum() / mask.sum()


def positions_2d(h: int, d: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine positions `[h*h, d]`: half the channels code the row, half the column."""
    pe = sinusoidal_positions(h, d // 2)  # (h, d/2)
    rows = pe[:, None, :].expand(h, h, d // 2)
    cols = pe[None, :, :].expand(h, h, d // 2)
    return torch.cat([rows, cols], dim=-1).reshape(h * h, d)


def standardise(images: torch.Tensor, mean: float = FASHION_MEAN, std: float = FASHION_STD) -> torch.Tensor:
    """uint8 `[B, H, W]` or float `[B, 1, H, W]` in [0, 1] -> standardised float `[B, 1, H, W]`."""
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    x = x.unsqueeze(1) if x.ndim == 3 else x
    return (x - mean) / std


# classes

@dataclass
class MAEConfig:
    """Sizes of the miniature MAE (defaults: the model of notebook 05)."""

    img: int = 28  # image side
    p: int = 7  # patch side -> L = (img / p)^2 = 16 patches
    C: int = 1  # channels
    d: int = 128  # encoder width
    depth: int = 4  # encoder blocks
    H: int = 4  # encoder heads
    d_dec: int = 64  # decoder width
    depth_dec: int = 4  # decoder blocks
    H_dec: int = 4  # decoder heads
    mlp_ratio: int = 4  # m = mlp_ratio * d
    norm_pix: bool = True  # per-patch standardised targets
    mask_ratio: float = 0.75
    mean: float = FASHION_MEAN  # pixel statistics used by `standardise`
    std: float = FASHION_STD


def scene_config(**changes: object) -> MAEConfig:
    """The model of notebook 05: 32 px scenes, 4 x 4 px patches (L = 64), a 2-block decoder."""
    return MAEConfig(**{"img": 32, "p": 4, "depth_dec": 2, "mean": SCENE_MEAN, "std": SCENE_STD, **changes})


class MAE(nn.Module):
    """Encoder on the visible patches, mask tokens added after it, a small decoder predicting pixels."""

    def __init__(self, cfg: MAEConfig | None = None, **kwargs: object) -> None:
        super().__init__()
        cfg = cfg or MAEConfig(**kwargs)
        if cfg.img % cfg.p:
            raise ValueError(f"image side {cfg.img} is not a multiple of p={cfg.p}.")
        self.cfg = cfg
        h = cfg.img // cfg.p
        self.L = h * h
        D_patch = cfg.p * cfg.p * cfg.C
        # encoder
        self.patch_embed = nn.Linear(D_patch, cfg.d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.d))
        self.register_buffer("pos", positions_2d(h, cfg.d)[None], persistent=False)  # (1, L, d)
        self.blocks = nn.ModuleList([TransformerBlock(cfg.d, cfg.H, cfg.mlp_ratio * cfg.d, norm_first=True,
                                                      activation="gelu", bias=True) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(cfg.d)
        # decoder
        self.decoder_embed = nn.Linear(cfg.d, cfg.d_dec)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.d_dec))
        self.register_buffer("pos_dec", positions_2d(h, cfg.d_dec)[None], persistent=False)  # (1, L, d_dec)
        self.decoder_blocks = nn.ModuleList([TransformerBlock(cfg.d_dec, cfg.H_dec, cfg.mlp_ratio * cfg.d_dec,
                                                              norm_first=True, activation="gelu", bias=True)
                                             for _ in range(cfg.depth_dec)])
        self.decoder_norm = nn.LayerNorm(cfg.d_dec)
        self.decoder_pred = nn.Linear(cfg.d_dec, D_patch)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def encode(self, x: torch.Tensor, mask_ratio: float = 0.0, noise: torch.Tensor | None = None,
               return_layers: bool = False):
        """Standardised images `[B, C, H, W]` -> tokens `[B, 1 + len_keep, d]` (class token first), mask, ids_restore.

        With `return_layers`, also the list of token tensors after each block (before the final norm).
        """
        z = self.patch_embed(patchify(x, self.cfg.p)) + self.pos  # (B, L, d)
        if mask_ratio > 0:
            z, mask, ids_restore = random_masking(z, mask_ratio, noise)  # (B, len_keep, d)
        else:
            B = z.shape[0]
            mask = torch.zeros(B, self.L, device=z.device)
            ids_restore = torch.arange(self.L, device=z.device).expand(B, -1)
        z = torch.cat([self.cls_token.expand(z.shape[0], -1, -1), z], dim=1)  # (B, 1 + len_keep, d)
        layers = []
        for blk in self.blocks:
            z = blk(z)
            layers.append(z)
        z = self.norm(z)
        return (z, mask, ids_restore, layers) if return_layers else (z, mask, ids_restore)

    def decode(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Encoded visible tokens `[B, 1 + len_keep, d]` -> predicted patches `[B, L, p*p*C]`."""
        y = self.decoder_embed(latent)  # (B, 1 + len_keep, d_dec)
        B, n_vis, d_dec = y.shape
        masks = self.mask_token.expand(B, self.L + 1 - n_vis, -1)  # mask tokens, after the encoder
        y_ = torch.cat([y[:, 1:], masks], dim=1)  # (B, L, d_dec), shuffled order
        y_ = torch.gather(y_, 1, ids_restore.unsqueeze(-1).expand(-1, -1, d_dec))  # unshuffle
        y = torch.cat([y[:, :1], y_ + self.pos_dec], dim=1)  # (B, 1 + L, d_dec)
        for blk in self.decoder_blocks:
            y = blk(y)
        return self.decoder_pred(self.decoder_norm(y))[:, 1:]  # (B, L, p*p*C), class token dropped

    def forward(self, x: torch.Tensor, mask_ratio: float | None = None, noise: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Standardised images -> (loss on masked patches, predicted patches `[B, L, p*p*C]`, mask `[B, L]`)."""
        ratio = self.cfg.mask_ratio if mask_ratio is None else mask_ratio
        latent, mask, ids_restore = self.encode(x, ratio, noise)
        pred = self.decode(latent, ids_restore)
        loss = masked_mse(pred, patch_targets(x, self.cfg.p, self.cfg.norm_pix), mask)
        return loss, pred, mask

    def features(self, x: torch.Tensor, pool: str = "mean", layer: int | str = -1) -> torch.Tensor:
        """Features of whole (unmasked) images, with gradients: uint8 `[B, H, W]` or float `[B, C, H, W]` in [0, 1].

        `pool`: "mean" of the patch tokens `[B, d]`, "cls" the class token `[B, d]`, "both" concatenated `[B, 2d]`.
        `layer`: which block's output (-1: the last, after the final norm), or "all": the pooled outputs
        of every block concatenated (`[B, depth * d]` for "mean").
        """
        if pool not in ("mean", "cls", "both"):
            raise ValueError(f"pool={pool!r}: use 'mean', 'cls' or 'both'.")
        if layer != "all" and not (isinstance(layer, int) and -1 <= layer < len(self.blocks)):
            raise ValueError(f"layer={layer!r}: use -1, 0..{len(self.blocks) - 1} or 'all'.")
        z, _, _, layers = self.encode(standardise(x, self.cfg.mean, self.cfg.std), 0.0, return_layers=True)
        layers = layers[:-1] + [z]  # the last block's output after the final norm

        def pooled(t: torch.Tensor) -> torch.Tensor:
            mean, cls = t[:, 1:].mean(1), t[:, 0]
            return {"mean": mean, "cls": cls, "both": torch.cat([mean, cls], dim=1)}[pool]

        if layer == "all":
            return torch.cat([pooled(t) for t in layers], dim=1)
        return pooled(layers[layer])

    @torch.no_grad()
    def get_features(self, x: torch.Tensor, pool: str = "mean", layer: int | str = -1) -> torch.Tensor:
        """`features` without gradients, in eval mode (for frozen-feature evaluation)."""
        self.eval()
        return self.features(x, pool, layer)


class MAEFeatures(nn.Module):
    """The encoder alone as a feature extractor: images in [0, 1] (or uint8) -> `[B, d]` (the protocol's `encode`)."""

    def __init__(self, mae: MAE, pool: str = "mean", layer: int | str = -1) -> None:
        super().__init__()
        self.mae, self.pool, self.layer = mae, pool, layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mae.features(x, self.pool, self.layer)


# training

def augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Whole-batch light augmentation: random horizontal flip of each image `[B, C, H, W]`."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    return torch.where(flip[:, None, None, None].to(x.device), x.flip(-1), x)


def mae_loss(model: MAE, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """A ready `loss_fn` for `aria_utils.fit`: uint8 images -> masked-patch loss."""
    loss, _, _ = model(augment(standardise(images, model.cfg.mean, model.cfg.std)))
    return loss, {}


def train_mae(model: MAE, images: torch.Tensor, *, epochs: float | None = None, steps: int | None = None,
              seconds: float | None = None, batch_size: int = 256, lr: float = 1.5e-3, weight_decay: float = 0.05,
              warmup: int = 200, seed: int = 0, progress: bool = True, desc: str = "MAE",
              on_step: "Callable[[MAE, int], None] | None" = None) -> dict:
    """Train with AdamW (betas 0.9, 0.95), warm-up then cosine, on uint8 images `[N, H, W]`; return the history dict.

    `on_step(model, step)` is called before each step (e.g. to save snapshots).
    """
    from .training import fit

    step = [0]

    def loss_fn(m: MAE, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        if on_step is not None:
            on_step(m, step[0])
        step[0] += 1
        return mae_loss(m, images)

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "token" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "token" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95))
    hist = fit(model, [images], loss_fn, epochs=epochs, steps=steps, seconds=seconds, batch_size=batch_size,
               optimizer=opt, warmup=warmup, seed=seed, desc=desc, progress=progress)
    return hist.to_dict()


def encoder_flops(cfg: MAEConfig, n_tokens: int) -> int:
    """Multiply-adds of one encoder forward pass on `n_tokens` tokens (linear layers and attention)."""
    d, m = cfg.d, cfg.mlp_ratio * cfg.d
    per_block = n_tokens * (4 * d * d + 2 * d * m) + 2 * n_tokens * n_tokens * d
    return cfg.depth * per_block + (n_tokens - 1) * cfg.p * cfg.p * cfg.C * d


@torch.no_grad()
def masked_error(model: MAE, images: torch.Tensor, ratio: float, seed: int = 0, batch_size: int = 1000) -> float:
    """The masked-patch loss of `model` on uint8 `images` at mask ratio `ratio`, one fixed draw of masks."""
    model.eval()
    g, total = torch.Generator().manual_seed(seed), 0.0
    for i in range(0, len(images), batch_size):
        xs = standardise(images[i: i + batch_size], model.cfg.mean, model.cfg.std)
        loss, _, _ = model(xs, mask_ratio=ratio, noise=torch.rand(len(xs), model.L, generator=g))
        total += loss.item() * len(xs)
    return total / len(images)


def vit_classifier(mae: MAE, n_classes: int = 10) -> nn.Sequential:
    """The encoder (mean of the patch tokens, no masking) followed by a new linear layer: images -> logits."""
    return nn.Sequential(MAEFeatures(mae), nn.Linear(mae.cfg.d, n_classes))


def finetune_vit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor,
                 *, steps: int, batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 1e-4,
                 warmup: int = 50, eval_every: int = 50, n_curve: int = 1000, seed: int = 0,
                 progress: bool = True) -> dict:
    """Train `model` (e.g. `vit_classifier`) end to end on uint8 `x` `[N, 32, 32]`, labels `y`: AdamW, warm-up
    then cosine, crops of 60-100 % and flips (the recipe of `finetune.train_classifier_run`).

    Returns `{"acc": test accuracy on all of x_test, "curve_steps", "curve_acc" (on the first `n_curve` test
    images every `eval_every` steps: the plateau), "loss": per-step training loss, "seconds"}`.
    """
    from .augment import light_augment
    from .data import to_float
    from .training import accuracy, classification_loss, fit

    curve_steps, curve_acc, step = [], [], [0]
    size = x.shape[-1]

    def curve_point(m: nn.Module) -> None:
        curve_steps.append(step[0])
        curve_acc.append(accuracy(m, x_test[:n_curve], y_test[:n_curve], 500, transform=to_float))
        m.train()

    def loss_fn(m: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        if step[0] % eval_every == 0 and step[0]:
            curve_point(m)
        step[0] += 1
        return classification_loss(m, light_augment(xb, size), yb)

    torch.manual_seed(seed)
    hist = fit(model, [x, y], loss_fn, steps=steps, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
               warmup=warmup, seed=seed, desc="fine-tune", progress=progress)
    curve_point(model)
    model.eval()
    return {"acc": accuracy(model, x_test, y_test, 500, transform=to_float), "curve_steps": curve_steps,
            "curve_acc": curve_acc, "loss": hist.loss, "seconds": hist.seconds}


def _machine() -> str:
    import platform
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"{torch.get_num_threads()} thread(s), torch {torch.__version__}")


def sweep_main(argv: list[str]) -> int:
    """`python -m aria_utils.mae sweep`: MAEs at several mask ratios, the same epochs each; their masked-patch
    error and frozen linear probe (3 draws of 100 labels per class) -> a results file (no weights)."""
    from .checkpoints import save_checkpoint
    from .data import per_class_subset
    from .protocol import SCENE_TEST_PER_CLASS, SCENE_TRAIN_PER_CLASS, encode_images, scene_images
    from .training import linear_probe

    ap = argparse.ArgumentParser(description=sweep_main.__doc__)
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.5, 0.75, 0.9])
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--draws", type=int, default=3, help="draws of the 100-labels-per-class pool")
    ap.add_argument("--per-class", type=int, default=100, help="labels per class of the probe")
    ap.add_argument("--n-train", type=int, default=None, help="first N training scenes only (tests)")
    ap.add_argument("--out", default="checkpoints/mae_ratio_sweep.pt")
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("ARIA_THREADS", 1)))
    x_tr, y_tr = scene_images("train", SCENE_TRAIN_PER_CLASS)
    x_te, y_te = scene_images("test", SCENE_TEST_PER_CLASS)
    x_tr, y_tr = x_tr[:args.n_train], y_tr[:args.n_train]
    start, results = time.perf_counter(), {}
    for r in args.ratios:
        torch.manual_seed(0)
        model = MAE(scene_config(mask_ratio=r))
        hist = train_mae(model, x_tr, epochs=args.epochs, batch_size=256, lr=1.5e-3, seed=0, desc=f"MAE r={r}")
        f_test = encode_images(MAEFeatures(model), x_te)
        probes = []
        for draw in range(args.draws):
            idx = per_class_subset(y_tr, args.per_class, seed=draw)
            probes.append(linear_probe(encode_images(MAEFeatures(model), x_tr[idx]), y_tr[idx], f_test, y_te))
        results[str(r)] = {"probe_n100": probes, "error": masked_error(model, x_te, r),
                           "error_at_0.75": masked_error(model, x_te, 0.75), "loss_every_10": hist["loss"][::10],
                           "seconds": hist["seconds"], "epochs": hist["epochs"]}
        print(f"[mae sweep] r = {r}: error {results[str(r)]['error']:.3f}, probe n100 {probes}, {hist['seconds']:.0f} s")
    meta = {"results": results, "machine": _machine(), "seconds": time.perf_counter() - start,
            "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "command": "python -m aria_utils.mae sweep " + " ".join(argv)}
    save_checkpoint(args.out, nn.Module(), {"ratios": args.ratios, "epochs": args.epochs, "draws": args.draws,
                                            "per_class": args.per_class,
                                            "mae": asdict(scene_config())}, meta)
    print(f"[mae sweep] {meta['seconds']:.0f} s -> {args.out}")
    return 0


def finetune_main(argv: list[str]) -> int:
    """`python -m aria_utils.mae finetune --arm mae|scratch`: the ViT + linear layer trained end to end on 100
    labels per class (the protocol's pool), from the shipped MAE encoder or from random weights, for each
    seed -> a results file (accuracies, curves) with the first seed's classifier weights (float16)."""
    from .checkpoints import save_checkpoint
    from .protocol import POOL_SEED, SCENE_TEST_PER_CLASS, SCENE_TRAIN_PER_CLASS, scene_images
    from .data import per_class_subset

    ap = argparse.ArgumentParser(description=finetune_main.__doc__)
    ap.add_argument("--arm", choices=("mae", "scratch"), required=True)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--per-class", type=int, default=100, help="labels per class (the protocol's pool n100)")
    ap.add_argument("--n-test", type=int, default=None, help="first N test scenes only (tests)")
    ap.add_argument("--out", default=None, help="default: checkpoints/mae_finetune_<arm>.pt")
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("ARIA_THREADS", 1)))
    x_tr, y_tr = scene_images("train", SCENE_TRAIN_PER_CLASS)
    x_te, y_te = scene_images("test", SCENE_TEST_PER_CLASS)
    x_te, y_te = x_te[:args.n_test], y_te[:args.n_test]
    idx = per_class_subset(y_tr, args.per_class, seed=POOL_SEED)
    start, runs, first = time.perf_counter(), {}, None
    for seed in args.seeds:
        torch.manual_seed(seed)
        mae = load_mae(SHIPPED_CHECKPOINT)[0] if args.arm == "mae" else MAE(scene_config())
        model = vit_classifier(mae)
        runs[str(seed)] = finetune_vit(model, x_tr[idx], y_tr[idx], x_te, y_te, steps=args.steps, seed=seed)
        first = model if first is None else first
        print(f"[mae finetune] {args.arm} seed {seed}: acc {runs[str(seed)]['acc']:.3f}, "
              f"curve {[round(a, 3) for a in runs[str(seed)]['curve_acc']]}")
    meta = {"runs": runs, "machine": _machine(), "seconds": time.perf_counter() - start,
            "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "command": "python -m aria_utils.mae finetune " + " ".join(argv)}
    out = args.out or f"checkpoints/mae_finetune_{args.arm}.pt"
    save_checkpoint(out, first.half(), {"arm": args.arm, "steps": args.steps, "seeds": args.seeds,
                                        "per_class": args.per_class,
                                        "batch_size": 64, "lr": 1e-3, "mae": asdict(scene_config())}, meta)
    print(f"[mae finetune] {meta['seconds']:.0f} s -> {out} ({Path(out).stat().st_size / 1e6:.1f} MB)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Train an MAE on the Fashion-MNIST training set (`--data fashion`, 28 px, p = 7) or on the 20k training
    scenes (`--data scenes`, 32 px, p = 4) and save a checkpoint loadable by `load_mae`."""
    from .checkpoints import save_checkpoint
    from .data import load_fashion_mnist
    from .protocol import SCENE_TRAIN_PER_CLASS, scene_images

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["sweep"], ["finetune"]):
        return {"sweep": sweep_main, "finetune": finetune_main}[argv[0]](argv[1:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=float, default=5.0, help="epoch budget")
    ap.add_argument("--seconds", type=float, default=3 * 3600.0, help="safety cap on wall-clock time")
    ap.add_argument("--data", choices=("fashion", "scenes"), default="fashion")
    ap.add_argument("--out", default=None, help="default: checkpoints/mae_<data>.pt")
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--mask-ratio", type=float, default=0.75)
    ap.add_argument("--decoder-depth", type=int, default=None, help="decoder blocks (default: 4, scenes 2)")
    ap.add_argument("--pixel-targets", action="store_true", help="raw pixels as targets (default: norm_pix)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--snapshot-dir", type=Path, default=None, help="also save a copy every 2 epochs here")
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("ARIA_THREADS", 1)))
    torch.manual_seed(args.seed)
    changes = {"mask_ratio": args.mask_ratio, "norm_pix": not args.pixel_targets}
    if args.decoder_depth is not None:
        changes["depth_dec"] = args.decoder_depth
    if args.data == "scenes":
        cfg = scene_config(**changes)
        images, _ = scene_images("train", SCENE_TRAIN_PER_CLASS)
    else:
        cfg = MAEConfig(**changes)
        images, _ = load_fashion_mnist("train")
    model = MAE(cfg)
    start = time.perf_counter()
    per_epoch = len(images) // args.batch_size

    def snapshot(m: MAE, step: int) -> None:
        if args.snapshot_dir is not None and step and step % (2 * per_epoch) == 0:
            args.snapshot_dir.mkdir(parents=True, exist_ok=True)
            torch.save(m.state_dict(), args.snapshot_dir / f"mae_ep{step // per_epoch}.pt")

    hist = train_mae(model, images, seconds=args.seconds, epochs=args.epochs, lr=args.lr,
                     batch_size=args.batch_size, seed=args.seed, on_step=snapshot)
    config = {"mae": asdict(cfg), "lr": args.lr, "batch_size": args.batch_size, "seconds": args.seconds,
              "epochs": args.epochs, "seed": args.seed, "threads": torch.get_num_threads()}
    meta = {"history": {k: v for k, v in hist.items() if k not in ("loss", "logs")}, "loss_every_50": hist["loss"][::50],
            "trained_on": f"CPU, {torch.get_num_threads()} thread(s), {hist['epochs']:.2f} epochs in {hist['seconds']:.0f} s wall",
            "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": str(torch.__version__),
            "command": "python -m aria_utils.mae " + " ".join(argv), "machine": _machine()}
    model.half()  # float16 storage halves the file; load_mae converts back to float32
    path = save_checkpoint(args.out or f"checkpoints/mae_{args.data}.pt", model, config, meta)
    print(f"[mae] {hist['steps']} steps, {hist['epochs']:.2f} epochs in {time.perf_counter() - start:.0f} s "
          f"-> {path} ({Path(path).stat().st_size / 1e6:.1f} MB)")
    return 0


def load_mae(path: str | Path) -> tuple[MAE, dict]:
    """Load a checkpoint written by `main` (weights_only): the model in float32 eval mode, and its config + meta."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    cfg = MAEConfig(**blob["config"]["mae"])
    model = MAE(cfg)
    model.load_state_dict({k: v.float() for k, v in blob["state_dict"].items()}, strict=True)
    return model.eval(), {"config": blob["config"], "meta": blob.get("meta", {})}



def load_results(path: str | Path) -> dict:
    """The config and meta (results, curves, command, machine) of a file written by the CLI (weights_only)."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    return {"config": blob["config"], "meta": blob.get("meta", {})}


def load_finetuned(path: str | Path) -> tuple[nn.Sequential, dict]:
    """The first seed's classifier of a `finetune` results file, in float32 eval mode, and its config + meta."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = vit_classifier(MAE(MAEConfig(**blob["config"]["mae"])))
    model.load_state_dict({k: v.float() for k, v in blob["state_dict"].items()}, strict=True)
    return model.eval(), {"config": blob["config"], "meta": blob.get("meta", {})}


if __name__ == "__main__":
    raise SystemExit(main())
