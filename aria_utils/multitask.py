"""Plumbing for the multi-task notebook (02): label availability flags, batched prediction of several heads,
a picture of one prediction, a check that missing labels change nothing, and the shipped experiment (every arm
of the notebook over three seeds). Its scenes (class, box and mask labels) come from `aria_utils.scenes`.

Make the shipped results (45 networks, about 6 minutes on 2 cores of the faster kind):

    ARIA_THREADS=2 python -m aria_utils.multitask
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoints import load_checkpoint, save_checkpoint
from .data import load_fashion_mnist
from .plot import overlay_mask
from .scenes import BACKGROUNDS, background_photos, make_scenes  # noqa: F401 (02 uses them as M.*)
from .setup import repo_root
from .training import fit

TASKS = ("cls", "box", "mask")


def label_flags(n: int, counts: Sequence[int | None], seed: int = 0) -> torch.Tensor:
    """Availability flags `[n, T]` (float 0/1): task t is labelled on `counts[t]` images drawn at random,
    independently of the other tasks (`None`: on every image)."""
    g = torch.Generator().manual_seed(seed)
    flags = torch.zeros(n, len(counts))
    for t, c in enumerate(counts):
        if c is None:
            flags[:, t] = 1
            continue
        if not 0 <= c <= n:
            raise ValueError(f"counts[{t}]={c}: must lie between 0 and n={n}.")
        flags[torch.randperm(n, generator=g)[:c], t] = 1
    return flags


@torch.no_grad()
def predict_heads(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, ...]:
    """All outputs of a model that returns a tuple of tensors, batch by batch in eval mode (on the CPU)."""
    model.eval()
    device = next(model.parameters()).device
    parts: list[list[torch.Tensor]] = []
    for i in range(0, len(x), batch_size):
        out = model(x[i: i + batch_size].to(device))
        if not isinstance(out, (tuple, list)):
            raise TypeError(f"predict_heads expects a model returning a tuple of tensors, got {type(out).__name__}.")
        if not parts:
            parts = [[] for _ in out]
        for p, o in zip(parts, out):
            p.append(o.float().cpu())
    return tuple(torch.cat(p) for p in parts)


def show_prediction(image: torch.Tensor, box: Sequence[float], mask: torch.Tensor, title: str = "",
                    true_box: Sequence[float] | None = None, ax: plt.Axes | None = None,
                    color: str = "tab:red") -> plt.Axes:
    """One scene with a predicted mask and box (`color`) and, if given, the true box (dashed, lime)."""
    ax = overlay_mask(image, mask, box, ax=ax, color=color, title=title)
    if true_box is not None:
        x0, y0, x1, y1 = [float(b) for b in true_box]
        ax.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, color="lime", lw=1, ls="--"))
    return ax


def same_loss_and_grads(model: nn.Module, loss_fn: Callable[..., torch.Tensor], *targets: Sequence[torch.Tensor]
                        ) -> bool:
    """True when `loss_fn(model, *t)` gives exactly the same loss and gradients for every `t` in `targets`."""
    seen = []
    for t in targets:
        model.zero_grad()
        loss = loss_fn(model, *t)
        loss.backward()
        seen.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    (l0, g0), rest = seen[0], seen[1:]
    return all(torch.equal(l0, l) and all(torch.equal(u, v) for u, v in zip(g0, g)) for l, g in rest)


# ---- The shipped experiment (the notebook's recipe, every arm over SEEDS), trained by the CLI below ----

S = 48  # canvas side (pixels)
RECIPE = {"n_train": 6000, "n_test": 2000, "steps": 250, "batch_size": 64, "lr": 3e-3, "weight_decay": 1e-4}
N_SCARCE = {"cls": 1000, "box": 100, "mask": 30}  # labels of the scarce task
SEEDS = (0, 1, 2)
SHIPPED = "multitask_results"  # checkpoints/<SHIPPED>.pt: every arm's test metrics and loss curve, some weights
KEPT = ("single_cls", "single_box", "single_mask", "multi_mask", "balanced", "transfer")  # weights of seed 0 kept


def conv_bn(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class MultiTaskNet(nn.Module):
    """The notebook's network: phi shared, psi_cls / psi_box / psi_mask task-specific (the same layer names)."""

    def __init__(self, n_classes: int = 10, d: int = 96) -> None:
        super().__init__()
        self.phi = nn.Sequential(conv_bn(1, 24, 2), conv_bn(24, 48, 2), conv_bn(48, 64, 2), conv_bn(64, d))
        self.psi_cls = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(d, n_classes))
        self.psi_box = nn.Sequential(nn.Conv2d(d, 16, 1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 6 * 6, 4))
        self.psi_mask = nn.Sequential(nn.Conv2d(d, 32, 3, padding=1), nn.ReLU(),
                                      nn.Upsample(scale_factor=2, mode="bilinear"),
                                      nn.Conv2d(32, 1, 3, padding=1), nn.Upsample(scale_factor=4, mode="bilinear"))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.phi(x)
        return self.psi_cls(h), self.psi_box(h).sigmoid(), self.psi_mask(h)[:, 0]


def multitask_loss(out: tuple[torch.Tensor, ...], label: torch.Tensor, box: torch.Tensor, mask: torch.Tensor,
                   m: torch.Tensor, w: Sequence[float] = (1.0, 1.0, 1.0)) -> torch.Tensor:
    """The notebook's loss: each task's per-sample loss averaged over the samples flagged in `m` (B, 3), weighted."""
    scores, box_hat, mask_logits = out
    ell = (F.cross_entropy(scores, label, reduction="none"), (box_hat - box / S).abs().mean(1),
           F.binary_cross_entropy_with_logits(mask_logits, mask.float(), reduction="none").mean((1, 2)))
    return sum(w_t * (m[:, k] * e).sum() / m[:, k].sum().clamp(min=1) for k, (w_t, e) in enumerate(zip(w, ell)))


def scene_sets(n_train: int, n_test: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The notebook's training and test scenes (Fashion-MNIST items on photographs, seeds 1 and 2)."""
    x_tr, y_tr = load_fashion_mnist("train")
    x_te, y_te = load_fashion_mnist("test")
    photos = background_photos()
    return (make_scenes(x_tr[:n_train], y_tr[:n_train], canvas=S, seed=1, backgrounds=photos),
            make_scenes(x_te[:n_test], y_te[:n_test], canvas=S, seed=2, backgrounds=photos))


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of matching boxes a[i], b[i] given as (x0, y0, x1, y1): (N, 4), (N, 4) -> (N,)."""
    wh = (torch.min(a[:, 2:], b[:, 2:]) - torch.max(a[:, :2], b[:, :2])).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    area = lambda z: (z[:, 2] - z[:, 0]).clamp(min=0) * (z[:, 3] - z[:, 1]).clamp(min=0)
    return inter / (area(a) + area(b) - inter).clamp(min=1e-9)


def test_metrics(model: nn.Module, test: dict[str, torch.Tensor]) -> dict[str, float]:
    """Accuracy, mean box IoU and mean mask IoU on the test scenes."""
    scores, box_hat, mask_logits = predict_heads(model, test["image"])
    p, g = mask_logits > 0, test["mask"]
    return {"accuracy": (scores.argmax(1) == test["label"]).float().mean().item(),
            "box IoU": box_iou(box_hat * S, test["box"]).mean().item(),
            "mask IoU": ((p & g).sum((1, 2)) / (p | g).sum((1, 2)).clamp(min=1)).mean().item()}


def arm_flags(arm: str, n_train: int, n_scarce: dict[str, int] = N_SCARCE) -> torch.Tensor:
    """Label flags of one arm: `single_<t>` / `multi_<t>` / `shuffled_<t>` (task t scarce; alone, beside the
    other tasks' labels on every scene, or beside those labels shuffled across scenes), `balanced` (as many
    labels of each task as the scarce classes, each on its own scenes), `pretrain` (classes and boxes of every
    scene) and `transfer` (the few masks only, starting from `pretrain`)."""
    if arm in ("balanced", "pretrain", "transfer"):
        if arm == "balanced":
            return label_flags(n_train, [n_scarce["cls"]] * 3, seed=3)
        f = arm_flags("multi_mask", n_train, n_scarce)
        return f * torch.tensor([1.0, 1.0, 0.0] if arm == "pretrain" else [0.0, 0.0, 1.0])
    kind, t = arm.split("_")
    k = TASKS.index(t)
    counts: list[int | None] = [None, None, None]
    counts[k] = n_scarce[t]
    f = label_flags(n_train, counts, seed=3)
    return f * F.one_hot(torch.tensor(k), 3).float() if kind == "single" else f


def shuffle_other_tasks(train: dict[str, torch.Tensor], scarce: str, seed: int = 4) -> dict[str, torch.Tensor]:
    """The unrelated-task control: the labels of the tasks other than `scarce` are moved to other scenes (one
    random permutation), so they no longer describe the image; the scarce task's labels stay true."""
    perm = torch.randperm(len(train["image"]), generator=torch.Generator().manual_seed(seed))
    key = {"cls": "label", "box": "box", "mask": "mask"}
    return {**train, **{key[t]: train[key[t]][perm] for t in TASKS if t != scarce}}


def train_arm(arm: str, train: dict[str, torch.Tensor], seed: int, steps: int = RECIPE["steps"],
              init: nn.Module | None = None, n_scarce: dict[str, int] = N_SCARCE) -> tuple[MultiTaskNet, list[float]]:
    """One network of the experiment, trained on the scenes that have at least one label; returns it and its
    loss curve. `seed` sets the initial weights and the batch order; `init` starts from those weights."""
    flags = arm_flags(arm, len(train["image"]), n_scarce)
    if arm.startswith("shuffled_"):
        train = shuffle_other_tasks(train, arm.split("_")[1])
    keep = flags.sum(1) > 0
    data = [train["image"][keep], train["label"][keep], train["box"][keep], train["mask"][keep], flags[keep]]
    torch.manual_seed(seed)
    model = MultiTaskNet()
    if init is not None:
        model.load_state_dict(init.state_dict())
    hist = fit(model, data, lambda mdl, x, y, b, mk, m: multitask_loss(mdl(x), y, b, mk, m), steps=steps,
               batch_size=RECIPE["batch_size"], lr=RECIPE["lr"], weight_decay=RECIPE["weight_decay"], seed=seed,
               desc=f"{arm} seed {seed}")
    return model, hist.loss


# (arm, steps): the notebook's 250 steps, plus shorter or longer trainings of the networks that learn the scarce
# task alone (single-task, fine-tuning), so that their best step budget can be the baseline
RUNS = (("single_cls", 250), ("multi_cls", 250), ("single_box", 250), ("single_box", 500), ("multi_box", 250),
        ("single_mask", 80), ("single_mask", 150), ("single_mask", 250), ("multi_mask", 250), ("shuffled_mask", 250),
        ("balanced", 250), ("pretrain", 250), ("transfer", 80), ("transfer", 150), ("transfer", 250))


def run_key(arm: str, steps: int) -> str:
    """`arm` for the notebook's step budget, `arm@steps` for another."""
    return arm if steps == RECIPE["steps"] else f"{arm}@{steps}"


def run_experiment(runs: Sequence[tuple[str, int]] = RUNS, seeds: Sequence[int] = SEEDS,
                   n_train: int = RECIPE["n_train"], n_test: int = RECIPE["n_test"],
                   n_scarce: dict[str, int] = N_SCARCE) -> tuple[dict, dict[str, nn.Module]]:
    """Train every run with every seed (`transfer` after `pretrain`, same seed); return the results
    (`metrics[key][seed]`, `loss[key][seed]` every 5th step, `seconds[key][seed]`, key from `run_key`) and the
    networks of the first seed."""
    train, test = scene_sets(n_train, n_test)
    res: dict = {"metrics": {}, "loss": {}, "seconds": {}}
    first: dict[str, nn.Module] = {}
    for seed in seeds:
        pre = None
        for arm, steps in runs:
            key, t0 = run_key(arm, steps), time.perf_counter()
            model, loss = train_arm(arm, train, seed, steps, init=pre if arm == "transfer" else None,
                                    n_scarce=n_scarce)
            pre = model if arm == "pretrain" else pre
            for field, v in (("metrics", test_metrics(model, test)), ("loss", loss[::5]),
                             ("seconds", time.perf_counter() - t0)):
                res[field].setdefault(key, {})[str(seed)] = v
            if seed == seeds[0]:
                first[key] = model
            print(f"[multitask] {key} seed {seed}: " + ", ".join(f"{k} {v:.3f}"
                                                                for k, v in res["metrics"][key][str(seed)].items()))
    return res, first


def seed_values(metrics: dict, key: str, metric: str) -> list[float]:
    """One run's test metric for each seed, from `metrics[key][seed]` (the shipped results' layout)."""
    return [m[metric] for _, m in sorted(metrics[key].items())]


def mean_sd(metrics: dict, key: str, metric: str) -> tuple[float, float]:
    """Mean and standard deviation (ddof 1; 0 for one seed) of one run's test metric over its seeds."""
    v = torch.tensor(seed_values(metrics, key, metric), dtype=torch.float64)
    return float(v.mean()), float(v.std()) if len(v) > 1 else 0.0


def budgets(metrics: dict, arm: str) -> dict[int, str]:
    """The step budgets of `arm` in the results, `{steps: key}`, in increasing steps."""
    out = {RECIPE["steps"]: arm} if arm in metrics else {}
    out.update({int(k.split("@")[1]): k for k in metrics if k.startswith(arm + "@")})
    return dict(sorted(out.items()))


def best_budget(metrics: dict, arm: str, metric: str) -> str:
    """The key of `arm`'s step budget with the best mean test metric (the baseline at its best)."""
    return max(budgets(metrics, arm).values(), key=lambda k: mean_sd(metrics, k, metric)[0])


def shipped_path() -> Path:
    return repo_root() / "checkpoints" / f"{SHIPPED}.pt"


def load_shipped(path: str | Path | None = None) -> tuple[dict[str, Any], nn.ModuleDict]:
    """The shipped results (metadata: config, metrics, loss curves, command, machine) and the seed-0 networks
    of `KEPT` (float16 on disk, float32 here)."""
    nets = nn.ModuleDict({arm: MultiTaskNet() for arm in KEPT})
    path = Path(path) if path else shipped_path()
    if not path.exists():
        raise FileNotFoundError(f"No shipped results at {path}; make them with `ARIA_THREADS=2 python -m "
                                "aria_utils.multitask` (about 6 minutes on 2 cores).")
    meta = load_checkpoint(path, nets)
    return meta, nets.eval()


def main(argv: list[str] | None = None) -> int:
    """Train the experiment of notebook 02 over SEEDS and write checkpoints/multitask_results.pt."""
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    ap.add_argument("--out", default=None, help="default: checkpoints/multitask_results.pt")
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("ARIA_THREADS", 2)))
    t0 = time.perf_counter()
    res, first = run_experiment(seeds=args.seeds)
    seconds = time.perf_counter() - t0
    config = {**RECIPE, "n_scarce": N_SCARCE, "seeds": args.seeds, "runs": [list(r) for r in RUNS], "kept": list(KEPT)}
    meta = {**res, "config": config, "seconds_total": seconds,
            "command": ("python -m aria_utils.multitask " + " ".join(argv if argv is not None else sys.argv[1:])).strip(),
            "trained_on": f"{platform.machine()} CPU, {torch.get_num_threads()} threads, torch {torch.__version__}, "
                          f"{len(RUNS) * len(args.seeds)} networks in {seconds:.0f} s wall",
            "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    nets = nn.ModuleDict({arm: first[arm] for arm in KEPT}).half()
    path = save_checkpoint(Path(args.out) if args.out else shipped_path(), nets, config, meta)
    print(f"[multitask] {len(RUNS) * len(args.seeds)} networks in {seconds:.0f} s -> {path} "
          f"({path.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
