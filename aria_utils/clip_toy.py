"""CLIP in miniature (notebook 08): tinted Fashion-MNIST items with captions, a word tokenizer,
a CNN image encoder, a small transformer text encoder, its training recipe, the two toy CLIPs shipped in
`checkpoints/`, and zero-shot helpers for open_clip.

Images are 28 x 56 RGB canvases: one Fashion-MNIST item, tinted one of 6 colours, on the left or
the right half. Captions come from templates: all name the class, some the colour, often the side.
Counting images hold 1-3 half-size copies of an item; a share of their captions says how many
("two red bags"), the others do not ("red bags"). The two shipped toy CLIPs differ only in that share:
`frequent` (every counting caption says the count) and `rare` (about one caption in several thousand does,
as rarely as on the web). Make them (about 4 minutes each on 2 CPU cores)::

    ARIA_THREADS=2 python -m aria_utils.clip_toy --counts frequent
    ARIA_THREADS=2 python -m aria_utils.clip_toy --counts rare
"""
from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from .data import load_fashion_mnist
from .setup import repo_root
from .training import fit
from .transformer import TransformerBlock

# One word per Fashion-MNIST class (same order as `FASHION_CLASSES`), so that the tokenizer stays word-level.
CLASS_WORDS = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")
PLURALS = ("t-shirts", "trousers", "pullovers", "dresses", "coats", "sandals", "shirts", "sneakers", "bags", "boots")
COLOURS = {"red": (0.95, 0.15, 0.15), "orange": (1.0, 0.55, 0.05), "yellow": (0.95, 0.9, 0.1),
           "green": (0.15, 0.8, 0.2), "blue": (0.2, 0.35, 1.0), "purple": (0.65, 0.2, 0.9)}
COLOUR_WORDS = tuple(COLOURS)
SIDES = ("left", "right")
COUNT_WORDS = ("one", "two", "three")
H, W = 28, 56  # canvas size
# Training captions that name the class and the colour (most name the side too) ...
TEMPLATES = (
    "a photo of a {colour} {cls} on the {side}",
    "a {colour} {cls} on the {side}",
    "the {cls} on the {side} is {colour}",
    "a photo of a {cls} in {colour}",
    "{colour} {cls} , {side} side",
)
# ... and captions that do not name the colour, as most web captions do not.
PLAIN_TEMPLATES = (
    "a photo of a {cls}",
    "a {cls}",
    "a {cls} on the {side}",
    "the {cls} on the {side}",
)
# Captions of counting images: the first ones name the colour, the last two do not. `{n}` is the count word
# ("two "), or nothing ("a " for one item) when the caption does not say how many; `{noun}` agrees in number.
COUNT_TEMPLATES = (
    "a photo of {n}{colour} {noun}",
    "{n}{noun} in {colour}",
    "{n}{colour} {noun}",
    "a photo of {n}{noun}",
    "{n}{noun}",
)
N_COUNT_COLOUR_TEMPLATES = 3
SPECIALS = ("<pad>", "<sos>", "<eos>", "<unk>")
_WORD = re.compile(r"[a-z0-9\-]+|[^\sa-z0-9\-]")


# helpers

def split_words(text: str) -> list[str]:
    """Lower-case `text` and cut it into words and punctuation marks."""
    return _WORD.findall(text.lower())


def held_out_combos() -> list[tuple[int, int]]:
    """The 12 (class, colour) combinations never shown in training: two per colour, at least one per class."""
    return [(c, c % 6) for c in range(10)] + [(2, 4), (7, 5)]


def held_out_counts() -> list[tuple[int, int]]:
    """The 10 (class, count) pairs never shown in training: one count per class, each count for 3-4 classes."""
    return [(c, c % 3 + 1) for c in range(10)]


def allowed_table(held_out: Sequence[tuple[int, int]], n_values: int = len(COLOURS), first: int = 0) -> torch.Tensor:
    """Bool `[10, n_values]`: True where (class, value) may appear in training (value `first` is column 0)."""
    ok = torch.ones(len(CLASS_WORDS), n_values, dtype=torch.bool)
    for c, k in held_out:
        ok[c, k - first] = False
    return ok


def caption(cls: int, colour: int, side: int = 0, template: int = 0, count: int | None = None,
            plain: bool = False, say_count: bool = True) -> str:
    """One caption: `TEMPLATES[template]` (`PLAIN_TEMPLATES` if `plain`), or `COUNT_TEMPLATES[template]`
    when `count` (1-3) is given, with the count word if `say_count` ("two red bags", else "red bags")."""
    words = {"cls": CLASS_WORDS[cls], "colour": COLOUR_WORDS[colour], "side": SIDES[side]}
    if count is not None:
        n = f"{COUNT_WORDS[count - 1]} " if say_count else ("a " if count == 1 else "")
        noun = CLASS_WORDS[cls] if count == 1 else PLURALS[cls]
        return COUNT_TEMPLATES[template].format(n=n, noun=noun, colour=words["colour"])
    return (PLAIN_TEMPLATES if plain else TEMPLATES)[template].format(**words)


def caption_fits(texts: Sequence[str], cls: torch.Tensor, colour: torch.Tensor, side: torch.Tensor,
                 count: torch.Tensor) -> torch.Tensor:
    """Bool `[T, N]`: caption t says nothing false of image n (its class and number, colour, side, count).

    `count` is 0 for a single full-size item (which has a side), 1-3 for a counting image (which has none).
    A singular class word fits counts 0-1, a plural one counts 2-3.
    """
    out = torch.ones(len(texts), len(cls), dtype=torch.bool)
    for t, text in enumerate(texts):
        for w in split_words(text):
            if w in CLASS_WORDS:
                out[t] &= (cls == CLASS_WORDS.index(w)) & (count <= 1)
            elif w in PLURALS:
                out[t] &= (cls == PLURALS.index(w)) & (count >= 2)
            elif w in COLOURS:
                out[t] &= colour == COLOUR_WORDS.index(w)
            elif w in SIDES:
                out[t] &= (side == SIDES.index(w)) & (count == 0)
            elif w in COUNT_WORDS:
                out[t] &= count == COUNT_WORDS.index(w) + 1
    return out


# tokenizer

class WordTokenizer:
    """A word-level tokenizer: `<sos> w_1 ... w_n <eos> <pad> ...`, one id per known word."""

    def __init__(self, words: Sequence[str], context_length: int = 12) -> None:
        self.vocab = list(SPECIALS) + sorted(set(words) - set(SPECIALS))
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.context_length = context_length
        self.pad, self.sos, self.eos, self.unk = (self.index[s] for s in SPECIALS)

    @classmethod
    def from_templates(cls, context_length: int = 12) -> "WordTokenizer":
        """The vocabulary of every template filled with every class, colour, side and count word."""
        words = set(CLASS_WORDS) | set(PLURALS) | set(COLOUR_WORDS) | set(SIDES) | set(COUNT_WORDS) | {"photo", "a"}
        for t in TEMPLATES + PLAIN_TEMPLATES + COUNT_TEMPLATES:
            words |= {w for w in split_words(re.sub(r"\{\w+\}", " ", t))}
        return cls(sorted(words), context_length)

    def __len__(self) -> int:
        return len(self.vocab)

    def unknown(self, text: str) -> list[str]:
        """The words of `text` that are not in the vocabulary."""
        return [w for w in split_words(text) if w not in self.index]

    def encode(self, texts: str | Sequence[str], strict: bool = True) -> torch.Tensor:
        """Texts -> ids `[B, context_length]`. Unknown words raise (`strict`) or become `<unk>`."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = torch.full((len(texts), self.context_length), self.pad, dtype=torch.long)
        for i, t in enumerate(texts):
            words = split_words(t)
            if strict and (bad := [w for w in words if w not in self.index]):
                raise ValueError(f"unknown words {bad} in {t!r}; the vocabulary is {self.vocab[len(SPECIALS):]}")
            if len(words) + 2 > self.context_length:
                raise ValueError(f"{t!r} has {len(words)} words; at most {self.context_length - 2} fit.")
            ids = [self.sos] + [self.index.get(w, self.unk) for w in words] + [self.eos]
            out[i, : len(ids)] = torch.tensor(ids)
        return out

    def decode(self, ids: torch.Tensor) -> list[str]:
        """Ids `[B, L]` -> texts (special tokens dropped)."""
        skip = {self.pad, self.sos, self.eos}
        return [" ".join(self.vocab[i] for i in row if i not in skip) for row in ids.tolist()]


# images

def render(items: torch.Tensor, colour: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
    """uint8 items `[N, 28, 28]`, colour ids `[N]`, sides `[N]` (0 left, 1 right) -> float `[N, 3, 28, 56]`."""
    if items.shape[-2:] != (28, 28):
        raise ValueError(f"render expects 28x28 items, got {tuple(items.shape)}.")
    rgb = torch.tensor(list(COLOURS.values()), device=items.device)[colour]  # (N, 3)
    tinted = (items.float() / 255.0)[:, None] * rgb[:, :, None, None]  # (N, 3, 28, 28)
    blank = torch.zeros_like(tinted)
    right = side.view(-1, 1, 1, 1).bool()
    return torch.cat([torch.where(right, blank, tinted), torch.where(right, tinted, blank)], dim=-1)  # (N, 3, 28, 56)


def render_counts(items: torch.Tensor, colour: torch.Tensor, count: torch.Tensor,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """1-3 half-size (14 x 14) copies of each item in distinct cells of a 2 x 4 grid: float `[N, 3, 28, 56]`."""
    if int(count.min()) < 1 or int(count.max()) > 3:
        raise ValueError("count must be 1, 2 or 3.")
    n = len(items)
    small = F.avg_pool2d(items.float()[:, None] / 255.0, 2)  # (N, 1, 14, 14)
    rgb = torch.tensor(list(COLOURS.values()))[colour]
    small = small * rgb[:, :, None, None]  # (N, 3, 14, 14)
    cells = torch.rand(n, 8, generator=generator).argsort(dim=1)  # a random order of the 8 cells
    out = torch.zeros(n, 3, 2, 4, 14, 14)  # (N, 3, row, col, 14, 14)
    for j in range(3):
        use = count > j
        r, c = cells[:, j] // 4, cells[:, j] % 4
        idx = torch.nonzero(use).flatten()
        out[idx, :, r[idx], c[idx]] = small[idx]
    return out.permute(0, 1, 2, 4, 3, 5).reshape(n, 3, 28, 56)  # (N, 3, 2*14, 4*14)


def sample_pairs(items: torch.Tensor, cls: torch.Tensor, allowed: torch.Tensor, tokenizer: WordTokenizer,
                 p_plain: float = 0.0, p_count: float = 0.0, count_allowed: torch.Tensor | None = None,
                 p_say_count: float = 1.0, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Fresh (image, caption) pairs for a batch of items: a colour allowed for each class, a side, a template.

    A share `p_plain` of the captions does not name the colour (`PLAIN_TEMPLATES`, or the plain counting
    templates). A share `p_count` of the images hold 1-3 copies of the item, a count allowed for its class by
    `count_allowed` (bool `[10, 3]`, all counts by default); a share `p_say_count` of their captions says how
    many ("two bags"), the others only use the plural ("bags").
    Returns `image [B, 3, 28, 56]`, `tokens [B, L]`, and the attributes `colour`, `side`, `count` (0: a single
    item), `said` (the caption says the count), `plain` and `template`.
    """
    n = len(items)
    weights = allowed[cls].float()  # (B, 6)
    if (weights.sum(1) == 0).any():
        raise ValueError("some class has no allowed colour.")
    count_allowed = torch.ones(len(CLASS_WORDS), 3, dtype=torch.bool) if count_allowed is None else count_allowed
    colour = torch.multinomial(weights, 1, generator=generator).flatten()
    side = torch.randint(0, 2, (n,), generator=generator)
    plain = torch.rand(n, generator=generator) < p_plain
    counting = torch.rand(n, generator=generator) < p_count
    said = counting & (torch.rand(n, generator=generator) < p_say_count)
    count = torch.where(counting, torch.multinomial(count_allowed[cls].float(), 1, generator=generator).flatten() + 1, 0)
    n_single = torch.where(plain, len(PLAIN_TEMPLATES), len(TEMPLATES))
    n_counted = torch.where(plain, len(COUNT_TEMPLATES) - N_COUNT_COLOUR_TEMPLATES, N_COUNT_COLOUR_TEMPLATES)
    first = torch.where(counting & plain, N_COUNT_COLOUR_TEMPLATES, 0)
    template = first + (torch.rand(n, generator=generator) * torch.where(counting, n_counted, n_single)).long()
    image = render(items, colour, side)
    if counting.any():
        image[counting] = render_counts(items[counting], colour[counting], count[counting], generator)
    texts = [caption(c, k, s, t, count=m or None, plain=p, say_count=y) for c, k, s, t, m, p, y in
             zip(cls.tolist(), colour.tolist(), side.tolist(), template.tolist(), count.tolist(), plain.tolist(),
                 said.tolist())]
    return {"image": image, "tokens": tokenizer.encode(texts), "colour": colour, "side": side, "count": count,
            "said": said, "plain": plain, "template": template}


# encoders

def _conv_block(a: int, b: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True))


class ImageEncoder(nn.Module):
    """f_v in two paths whose features are added, `[B, 3, 28, 56]` -> `[B, d_out]`.

    The shape path is a small CNN on the intensity (the maximum over the colour channels, scaled so that the
    brightest pixel is 1): it cannot see the colour, not even a tint's brightness. The colour path is an MLP on the item's mean colour: it cannot see the shape. The CNN keeps a left
    and a right half, so that the side survives.
    """

    def __init__(self, width: int = 16, d_out: int = 128) -> None:
        super().__init__()
        w = width
        self.shape = nn.Sequential(_conv_block(1, w), nn.MaxPool2d(2), _conv_block(w, 2 * w), nn.MaxPool2d(2),
                                   _conv_block(2 * w, 4 * w), nn.AdaptiveAvgPool2d((1, 2)))  # (B, 4w, 1, 2)
        self.shape_fc = nn.Linear(8 * w, d_out)
        self.colour = nn.Sequential(nn.Linear(3, 32), nn.ReLU(), nn.Linear(32, d_out))
        self.shape.to(memory_format=torch.channels_last)  # about twice as fast on a CPU

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        intensity = x.amax(dim=1, keepdim=True)  # (B, 1, 28, 56)
        mean_colour = x.sum((2, 3)) / intensity.sum((2, 3)).clamp_min(1e-6)  # (B, 3): the tint, max channel ~1
        intensity = intensity / intensity.amax(dim=(2, 3), keepdim=True).clamp_min(1e-6)  # brightest pixel: 1
        shape = self.shape(intensity.contiguous(memory_format=torch.channels_last))  # (B, 4w, 1, 2)
        shape = F.relu(self.shape_fc(shape.flatten(1)))  # (B, d_out)
        return shape + F.relu(self.colour(mean_colour))  # (B, d_out)


class TextEncoder(nn.Module):
    """f_u: token + position embeddings, `depth` causal pre-norm `TransformerBlock`s, the state at `<eos>`."""

    def __init__(self, vocab_size: int, context_length: int, eos_id: int, d: int = 64, H: int = 4, depth: int = 2) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab_size, d)
        self.pos = nn.Parameter(torch.randn(context_length, d) * 0.02)
        self.blocks = nn.ModuleList([TransformerBlock(d, H, 4 * d, norm_first=True, activation="gelu")
                                     for _ in range(depth)])
        self.norm = nn.LayerNorm(d)
        self.eos_id = eos_id
        self.register_buffer("causal", torch.tril(torch.ones(context_length, context_length, dtype=torch.bool)),
                             persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens `[B, L]` (one `<eos>` each) -> `[B, d]`."""
        B, L = tokens.shape
        z = self.tok(tokens) + self.pos[:L]  # (B, L, d)
        for blk in self.blocks:
            z = blk(z, mask=self.causal[:L, :L])  # each token sees itself and the words before it
        eos = (tokens == self.eos_id).int().argmax(dim=1)  # (B,) position of <eos>
        return self.norm(z[torch.arange(B), eos])  # (B, d)


class ToyCLIP(nn.Module):
    """Two encoders f_v, f_u, two linear heads g_v, g_u into a `embed`-d joint space, and a learnable tau."""

    def __init__(self, vocab_size: int, context_length: int, eos_id: int, d: int = 64, embed: int = 64,
                 width: int = 16, tau: float = 0.07) -> None:
        super().__init__()
        self.f_v = ImageEncoder(width, 2 * d)
        self.g_v = nn.Linear(2 * d, embed)
        self.f_u = TextEncoder(vocab_size, context_length, eos_id, d)
        self.g_u = nn.Linear(d, embed)
        self.log_inv_tau = nn.Parameter(torch.tensor(float(np.log(1.0 / tau))))  # learn log(1/tau), as CLIP does

    @property
    def tau(self) -> torch.Tensor:
        """The temperature, kept in [0.01, 1]."""
        return 1.0 / self.log_inv_tau.exp().clamp(1.0, 100.0)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """v = g_v(f_v(x_v)): `[B, 3, 28, 56]` -> `[B, embed]` (not normalised)."""
        return self.g_v(self.f_v(x))

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """u = g_u(f_u(x_u)): `[B, L]` -> `[B, embed]` (not normalised)."""
        return self.g_u(self.f_u(tokens))


@torch.no_grad()
def embed_images(model: ToyCLIP, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Unit-norm image embeddings `[N, embed]` (on the CPU), batch by batch, in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    return F.normalize(torch.cat([model.encode_image(images[i: i + batch_size].to(device)).float().cpu()
                                  for i in range(0, len(images), batch_size)]), dim=-1)


@torch.no_grad()
def embed_texts(model: ToyCLIP, tokenizer: WordTokenizer, texts: Sequence[str], strict: bool = True) -> torch.Tensor:
    """Unit-norm text embeddings `[T, embed]` (on the CPU)."""
    model.eval()
    tokens = tokenizer.encode(list(texts), strict=strict).to(next(model.parameters()).device)
    return F.normalize(model.encode_text(tokens).float().cpu(), dim=-1)


# training, and the two shipped toy CLIPs

ARCH: dict[str, int] = {"d": 64, "embed": 64, "width": 16}  # ToyCLIP's sizes
RECIPE: dict[str, float] = {"batch_size": 256, "lr": 2e-3, "weight_decay": 0.01, "warmup": 50, "lam": 0.5}
DATA: dict[str, float] = {"p_plain": 0.4, "p_count": 0.25}  # captions without colour; counting images
# The share of counting images whose caption says how many: every one, or about one in a thousand (then about
# one caption in four thousand says a count, as rarely as web captions do).
SAY_COUNT: dict[str, float] = {"frequent": 1.0, "rare": 0.001}
SHIPPED_STEPS = 1200


def contrastive_loss(v: torch.Tensor, u: torch.Tensor, tau: torch.Tensor, lam: float = 0.5) -> torch.Tensor:
    """CLIP's symmetric loss: cross-entropy over the rows (image -> text) and the columns (text -> image) of
    the cosine logits `[N, N]` divided by `tau`, weighted `lam` and `1 - lam`."""
    logits = F.normalize(v, dim=-1) @ F.normalize(u, dim=-1).T / tau
    target = torch.arange(len(v), device=v.device)
    return lam * F.cross_entropy(logits, target) + (1 - lam) * F.cross_entropy(logits.T, target)


def new_model(tokenizer: WordTokenizer, seed: int = 0) -> ToyCLIP:
    """A ToyCLIP of `ARCH` sizes with the initial weights that `seed` gives."""
    torch.manual_seed(seed)
    return ToyCLIP(len(tokenizer), tokenizer.context_length, tokenizer.eos, **ARCH)


def train_clip(model: ToyCLIP, tokenizer: WordTokenizer, items: torch.Tensor, cls: torch.Tensor, steps: int, *,
               say_count: float, seed: int = 0, seconds: float | None = None,
               loss: Callable[..., torch.Tensor] = contrastive_loss, desc: str = "toy CLIP",
               progress: bool = True) -> dict[str, Any]:
    """`RECIPE` for `steps` steps, each on `batch_size` fresh pairs (`sample_pairs` with `DATA`, the held-out
    combinations and counts kept out, a share `say_count` of the counting captions saying the count).

    `loss(v, u, tau, lam)` is the contrastive loss. Returns the history as a dict; its logs hold tau and the
    share of captions that said a count at each step.
    """
    allowed, count_allowed = allowed_table(held_out_combos()), allowed_table(held_out_counts(), 3, first=1)
    g = torch.Generator().manual_seed(seed)
    recipe = dict(RECIPE)
    lam = recipe.pop("lam")

    def step(m: ToyCLIP, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        b = sample_pairs(xb.cpu(), yb.cpu(), allowed, tokenizer, count_allowed=count_allowed,
                         p_say_count=say_count, generator=g, **DATA)
        device = yb.device
        v, u = m.encode_image(b["image"].to(device)), m.encode_text(b["tokens"].to(device))
        return loss(v, u, m.tau, lam), {"tau": m.tau.item(), "said_count": b["said"].float().mean().item()}

    hist = fit(model, [items, cls], step, steps=steps, seconds=seconds, seed=seed, desc=desc, progress=progress,
               **recipe)
    return hist.to_dict()


def shipped_path(counts: str) -> Path:
    """`checkpoints/clip_toy_<counts>.pt`."""
    return repo_root() / "checkpoints" / f"clip_toy_{counts}.pt"


def shipped_config(counts: str, steps: int, seed: int) -> dict[str, Any]:
    """What a shipped toy CLIP was trained with (stored in the file and checked on load)."""
    return {"arch": ARCH, "recipe": RECIPE, "data": DATA, "say_count": SAY_COUNT[counts], "counts": counts,
            "steps": steps, "seed": seed, "vocab": len(WordTokenizer.from_templates())}


def load_shipped(counts: str, path: str | Path | None = None) -> tuple[ToyCLIP, WordTokenizer, dict[str, Any]]:
    """The shipped toy CLIP trained with counts `frequent` or `rare` in its captions, in eval mode, its
    tokenizer and its metadata (config, command, seconds, machine, history, sha256 of the file)."""
    path = Path(path or shipped_path(counts))
    if not path.exists():
        raise FileNotFoundError(f"No checkpoint at {path}; make it with `python -m aria_utils.clip_toy --counts {counts}`.")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    config = blob.get("config")
    if not isinstance(config, dict) or config != shipped_config(counts, config.get("steps"), config.get("seed")):
        raise CheckpointError(f"{path} holds another model ({config}); retrain it with "
                              f"`python -m aria_utils.clip_toy --counts {counts}`.")
    tok = WordTokenizer.from_templates()
    model = new_model(tok, config["seed"])
    meta = load_checkpoint(path, model)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return model.eval(), tok, {**meta, "config": config, "sha256": sha}


def main(argv: list[str] | None = None) -> int:
    """Train one toy CLIP on fresh pairs of the 60k training items and save it where notebook 08 loads it."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", choices=sorted(SAY_COUNT), required=True)
    ap.add_argument("--steps", type=int, default=SHIPPED_STEPS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=3600.0, help="safety cap on wall-clock time")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.steps < 1:
        ap.error("--steps must be at least 1")
    torch.set_num_threads(int(os.environ.get("ARIA_THREADS", 2)))
    items, cls = load_fashion_mnist("train")
    tok = WordTokenizer.from_templates()
    model = new_model(tok, args.seed)
    hist = train_clip(model, tok, items, cls, args.steps, say_count=SAY_COUNT[args.counts], seed=args.seed,
                      seconds=args.seconds, desc=f"toy CLIP, counts {args.counts}")
    said = hist["logs"].pop("said_count")
    meta = {"history": hist, "captions": hist["steps"] * int(RECIPE["batch_size"]),
            "captions_with_count": round(sum(said) * RECIPE["batch_size"]),
            "command": "python -m aria_utils.clip_toy " + " ".join(argv if argv is not None else sys.argv[1:]),
            "trained_on": f"{platform.machine()} CPU, {torch.get_num_threads()} threads, {hist['steps']} steps "
                          f"in {hist['seconds']:.0f} s wall",
            "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": str(torch.__version__)}
    out = args.out or shipped_path(args.counts)
    save_checkpoint(out, model, shipped_config(args.counts, hist["steps"], args.seed), meta)
    print(f"[clip_toy] counts {args.counts}: {hist['steps']} steps in {hist['seconds']:.0f} s, final loss "
          f"{hist['loss'][-1]:.4f}, {meta['captions_with_count']} of {meta['captions']} captions said a count "
          f"-> {out} ({Path(out).stat().st_size / 1e6:.2f} MB)")
    return 0


# the real CLIP (open_clip)

@torch.no_grad()
def open_clip_zero_shot(model: nn.Module, preprocess, tokenizer, photos: Sequence[np.ndarray],
                        prompts: Sequence[str]) -> torch.Tensor:
    """Zero-shot probabilities `[N photos, T prompts]` of an open_clip model (softmax of 100 x cosine)."""
    from PIL import Image

    if not photos or not prompts:
        raise ValueError("open_clip_zero_shot needs at least one photo and one prompt.")
    model.eval()
    x = torch.stack([preprocess(Image.fromarray(np.asarray(p, dtype=np.uint8))) for p in photos])  # (N, 3, 224, 224)
    v = F.normalize(model.encode_image(x).float(), dim=-1)
    u = F.normalize(model.encode_text(tokenizer(list(prompts))).float(), dim=-1)
    scale = model.logit_scale.exp() if hasattr(model, "logit_scale") else torch.tensor(100.0)
    return (scale * v @ u.T).softmax(dim=-1)


if __name__ == "__main__":
    raise SystemExit(main())
