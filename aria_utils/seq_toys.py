"""Toy languages and small transformers for notebook 06: next-word prediction, a task that needs depth,
translation with an encoder-decoder, and positional codes added, concatenated or absent.

The models are built from the package's blocks (`aria_utils.transformer`), which notebook 06 checks against
its hand-written equations (1)-(6) and against PyTorch.
"""
from __future__ import annotations

import random

import torch
import torch.nn as nn
import torch.nn.functional as F

from .transformer import DecoderBlock, TransformerBlock, causal_mask, sinusoidal_positions

# ---- a toy English: subject-verb agreement across a prepositional phrase ----
NOUNS = {"sg": ["cat", "dog", "bird", "fox"], "pl": ["cats", "dogs", "birds", "foxes"]}
VERBS = {"sg": ["runs", "sleeps", "sings", "eats"], "pl": ["run", "sleep", "sing", "eat"]}
ADJS, PREPS = ["small", "big", "red"], ["near", "under", "with"]
WORDS = ["."] + ["the"] + ADJS + PREPS + NOUNS["sg"] + NOUNS["pl"] + VERBS["sg"] + VERBS["pl"]


def _noun_phrase(rng: random.Random) -> tuple[list[str], str]:
    """'the (adj) noun' and the noun's number."""
    number = rng.choice(("sg", "pl"))
    words = ["the"] + ([rng.choice(ADJS)] if rng.random() < 0.5 else [])
    return words + [rng.choice(NOUNS[number])], number


def sentence(rng: random.Random) -> list[str]:
    """One sentence: the (adj) noun [prep the (adj) noun] verb . ; the verb agrees with the first noun."""
    words, number = _noun_phrase(rng)
    if rng.random() < 0.6:
        words += [rng.choice(PREPS)] + _noun_phrase(rng)[0]
    return words + [rng.choice(VERBS[number]), "."]


def grammatical(words: list[str]) -> bool:
    """Whether `words` is one sentence of the toy English (agreement included)."""
    def noun_phrase(i: int) -> tuple[int, str] | None:
        if i >= len(words) or words[i] != "the":
            return None
        i += 1 + (i + 1 < len(words) and words[i + 1] in ADJS)
        for number, nouns in NOUNS.items():
            if i < len(words) and words[i] in nouns:
                return i + 1, number
        return None

    first = noun_phrase(0)
    if first is None:
        return False
    i, number = first
    if i < len(words) and words[i] in PREPS:
        second = noun_phrase(i + 1)
        if second is None:
            return False
        i = second[0]
    return words[i:] == [words[i], "."] if i < len(words) and words[i] in VERBS[number] else False


def toy_english(n_sentences: int, seed: int = 0) -> torch.Tensor:
    """A stream of token ids (one long text) of `n_sentences` sentences."""
    rng, index = random.Random(seed), {w: i for i, w in enumerate(WORDS)}
    return torch.tensor([index[w] for _ in range(n_sentences) for w in sentence(rng)])


def windows(stream: torch.Tensor, n: int) -> torch.Tensor:
    """Cut a stream into non-overlapping windows of n + 1 tokens `[N, n + 1]` (input: [:-1], target: [1:])."""
    N = (len(stream) - 1) // n
    return torch.stack([stream[i * n: i * n + n + 1] for i in range(N)])


def ngram_cross_entropy(train: torch.Tensor, test: torch.Tensor, order: int, vocab: int, smooth: float = 0.1
                        ) -> float:
    """Cross-entropy (nats per token) on the stream `test` of a unigram (order 1) or bigram (order 2) model
    counted on `train`, with add-`smooth` smoothing."""
    if order == 1:
        p = (torch.bincount(train, minlength=vocab).double() + smooth)
        return float(-(p / p.sum()).log()[test[1:]].mean())
    counts = torch.zeros(vocab, vocab, dtype=torch.float64)
    counts.index_put_((train[:-1], train[1:]), torch.ones(len(train) - 1, dtype=torch.float64), accumulate=True)
    p = (counts + smooth) / (counts + smooth).sum(1, keepdim=True)
    return float(-p[test[:-1], test[1:]].log().mean())


def bigram_generate(train: torch.Tensor, start: int, steps: int, vocab: int, n_samples: int = 1,
                    seed: int = 0) -> torch.Tensor:
    """Sample `steps` tokens after `start` from the bigram model counted on `train`: `[n_samples, steps + 1]`."""
    counts = torch.zeros(vocab, vocab, dtype=torch.float64)
    counts.index_put_((train[:-1], train[1:]), torch.ones(len(train) - 1, dtype=torch.float64), accumulate=True)
    g = torch.Generator().manual_seed(seed)
    out = torch.full((n_samples, 1), start, dtype=torch.long)
    for _ in range(steps):
        p = counts[out[:, -1]] + 1e-9
        out = torch.cat([out, torch.multinomial(p, 1, generator=g)], dim=1)
    return out


def sentences_of(tokens: torch.Tensor) -> list[list[str]]:
    """The complete sentences (ending with '.') of each row of generated tokens, as lists of words; a row's
    text before its first '.' is dropped (it may be the end of an earlier sentence)."""
    out = []
    for row in tokens.tolist():
        text = " ".join(WORDS[i] for i in row).split(".")
        out += [s.split() + ["."] for s in text[1:-1]]
    return out


# ---- a task that needs depth: follow pointers ----
def pointer_chase(N: int, n: int = 8, hops: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """N random maps p of {0..n-1} into itself, written as the sequence p(0) .. p(n-1) `[N, n]`, and the
    targets p^hops(i) at every position i `[N, n]` (p applied `hops` times)."""
    g = torch.Generator().manual_seed(seed)
    p = torch.randint(0, n, (N, n), generator=g)
    target = torch.arange(n).expand(N, n)
    for _ in range(hops):
        target = p.gather(1, target)
    return p, target


# ---- translation: digits into number words ----
UNITS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen " \
        "seventeen eighteen nineteen".split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
SRC = ["<pad>"] + [str(i) for i in range(10)]
TGT = ["<pad>", "<s>", "</s>", "hundred"] + UNITS + TENS[2:]


def number_words(v: int) -> list[str]:
    """0 <= v < 1000 in English words: 342 -> three hundred forty two."""
    if not 0 <= v < 1000:
        raise ValueError(f"number_words handles 0..999, not {v}")
    h, r = divmod(v, 100)
    words = [UNITS[h], "hundred"] if h else []
    if r >= 20:
        words += [TENS[r // 10]] + ([UNITS[r % 10]] if r % 10 else [])
    elif r or not h:
        words.append(UNITS[r])
    return words


def translation_pairs(numbers: list[int], n_src: int = 3, n_tgt: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Source digits `[N, n_src]` (right-aligned, padded on the left) and target words `[N, n_tgt]`
    (<s> words </s>, padded on the right)."""
    src = torch.zeros(len(numbers), n_src, dtype=torch.long)
    tgt = torch.zeros(len(numbers), n_tgt, dtype=torch.long)
    for r, v in enumerate(numbers):
        digits = [SRC.index(c) for c in str(v)]
        src[r, n_src - len(digits):] = torch.tensor(digits)
        words = ["<s>"] + number_words(v) + ["</s>"]
        tgt[r, :len(words)] = torch.tensor([TGT.index(w) for w in words])
    return src, tgt


# ---- models ----
class TokenTransformer(nn.Module):
    """Token embedding, positional codes, L blocks of the package, a linear read-out at every position.

    `positions`: "add" (sinusoidal codes added to the d dimensions), "concat" (the slide's form: d - p learned
    dimensions followed by p sinusoidal ones) or "none". `causal=True` masks attention to the future."""

    def __init__(self, vocab: int, n: int, d: int = 64, H: int = 4, m: int = 128, L: int = 1, out: int | None = None,
                 positions: str = "add", p: int = 16, causal: bool = False, norm_first: bool = False) -> None:
        super().__init__()
        if positions not in ("add", "concat", "none"):
            raise ValueError(f"positions={positions!r}: use 'add', 'concat' or 'none'")
        self.positions, self.causal = positions, causal
        self.embed = nn.Embedding(vocab, d - p if positions == "concat" else d)
        pe = sinusoidal_positions(n, p if positions == "concat" else d)
        self.register_buffer("pe", pe if positions != "none" else torch.zeros(n, d))
        self.blocks = nn.ModuleList([TransformerBlock(d, H, m, norm_first=norm_first) for _ in range(L)])
        self.norm = nn.LayerNorm(d) if norm_first else nn.Identity()
        self.head = nn.Linear(d, out or vocab)

    def forward(self, tokens: torch.Tensor, return_attention: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """tokens `[B, n]` -> logits `[B, n, out]` (and the alphas `[B, H, n, n]` of every block)."""
        B, n = tokens.shape
        e = self.embed(tokens)
        if self.positions == "concat":
            h = torch.cat([e, self.pe[:n].expand(B, n, -1)], dim=-1)  # (B, n, d - p + p)
        else:
            h = e + self.pe[:n]
        mask = causal_mask(n).to(tokens.device) if self.causal else None
        alphas = []
        for block in self.blocks:
            if return_attention:
                h, alpha = block(h, mask, return_attention=True)
                alphas.append(alpha)
            else:
                h = block(h, mask)
        logits = self.head(self.norm(h))
        return (logits, alphas) if return_attention else logits


class Translator(nn.Module):
    """Encoder (L blocks) and decoder (L decoder blocks with cross-attention), sinusoidal positions added."""

    def __init__(self, n_src: int, n_tgt: int, d: int = 64, H: int = 4, m: int = 128, L: int = 1) -> None:
        super().__init__()
        self.src_embed, self.tgt_embed = nn.Embedding(len(SRC), d), nn.Embedding(len(TGT), d)
        self.register_buffer("pe", sinusoidal_positions(max(n_src, n_tgt), d))
        self.encoder = nn.ModuleList([TransformerBlock(d, H, m) for _ in range(L)])
        self.decoder = nn.ModuleList([DecoderBlock(d, H, m) for _ in range(L)])
        self.head = nn.Linear(d, len(TGT))

    def encode(self, src: torch.Tensor) -> torch.Tensor:
        h = self.src_embed(src) + self.pe[:src.shape[1]]
        for block in self.encoder:
            h = block(h)
        return h

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor, return_attention: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """src `[B, n']`, the target so far `[B, n]` -> next-word logits `[B, n, |TGT|]` (and the last decoder
        block's cross-attention `[B, H, n, n']`)."""
        memory = self.encode(src)
        h = self.tgt_embed(tgt_in) + self.pe[:tgt_in.shape[1]]
        alpha = None
        for block in self.decoder:
            h, alpha = block(h, memory, return_attention=True) if return_attention else (block(h, memory), None)
        logits = self.head(h)
        return (logits, alpha) if return_attention else logits

    @torch.no_grad()
    def translate(self, src: torch.Tensor, n_tgt: int) -> torch.Tensor:
        """Greedy decoding: `[B, n_tgt]` starting with <s>, one word at a time."""
        out = torch.full((len(src), 1), TGT.index("<s>"), dtype=torch.long, device=src.device)
        for _ in range(n_tgt - 1):
            nxt = self(src, out)[:, -1].argmax(-1, keepdim=True)
            out = torch.cat([out, nxt], dim=1)
        return out


def next_token_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, ignore_index: int = -100
                    ) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy of the logits at every position (`model(x)` `[B, n, V]`) against `y` `[B, n]`."""
    logits = model(x)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=ignore_index)
    keep = y != ignore_index
    return loss, {"acc": ((logits.argmax(-1) == y) & keep).sum().item() / max(keep.sum().item(), 1)}


@torch.no_grad()
def generate(model: TokenTransformer, prompt: torch.Tensor, steps: int, n: int, temperature: float = 1.0,
             seed: int = 0) -> torch.Tensor:
    """Sample `steps` tokens after `prompt` `[B, t]` from a causal TokenTransformer (context of n tokens)."""
    g = torch.Generator().manual_seed(seed)
    out = prompt
    for _ in range(steps):
        logits = model(out[:, -n:])[:, -1] / temperature
        out = torch.cat([out, torch.multinomial(logits.softmax(-1), 1, generator=g)], dim=1)
    return out


def bag_baseline(x: torch.Tensor, target: torch.Tensor) -> float:
    """The best accuracy without positions on a reordering task: at position i a model that sees only the bag
    of tokens and its own token x_i can at best guess the most frequent token of the bag without x_i."""
    B, n = x.shape
    counts = F.one_hot(x, int(x.max()) + 1).sum(1)  # (B, V)
    rest = counts[:, None, :] - F.one_hot(x, counts.shape[1])  # (B, n, V): the bag without x_i
    best = rest.max(-1, keepdim=True).values
    hit = rest.gather(-1, target[..., None]) == best  # the target is among the most frequent
    ties = (rest == best).sum(-1, keepdim=True)
    return float((hit / ties).mean())  # a random choice among ties


__all__ = ["ADJS", "NOUNS", "PREPS", "SRC", "TGT", "TokenTransformer", "Translator", "VERBS", "WORDS", "bag_baseline",
           "bigram_generate", "generate", "grammatical", "next_token_loss", "ngram_cross_entropy", "number_words",
           "pointer_chase", "sentence", "sentences_of", "toy_english", "translation_pairs", "windows"]
