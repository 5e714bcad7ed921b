"""aria_utils.seq_toys: the toy languages are what they say, the baselines are right, the models mask the future."""
import math
import random

import pytest
import torch

from aria_utils import seq_toys as T


def test_toy_english_sentences_parse_and_agree() -> None:
    rng = random.Random(0)
    sentences = [T.sentence(rng) for _ in range(500)]
    assert all(T.grammatical(s) for s in sentences)
    assert any(len(s) > 6 for s in sentences) and any(len(s) <= 5 for s in sentences)  # with and without a phrase
    assert T.grammatical("the cat near the dogs runs .".split())
    for bad in ("the cat near the dogs run .", "the cats runs .", "the big cat .", "the cat runs", "cat runs ."):
        assert not T.grammatical(bad.split()), bad
    stream = T.toy_english(50, seed=1)
    assert torch.equal(stream, T.toy_english(50, seed=1)) and stream.dtype == torch.long
    assert T.sentences_of(stream[None]) and all(T.grammatical(s) for s in T.sentences_of(stream[None]))


def test_windows_and_ngram_baselines() -> None:
    stream = torch.arange(25)
    w = T.windows(stream, 6)
    assert w.shape == (4, 7) and torch.equal(w[1], torch.arange(6, 13))
    train, test = T.toy_english(3000, 0), T.toy_english(300, 1)
    V = len(T.WORDS)
    uni, bi = T.ngram_cross_entropy(train, test, 1, V), T.ngram_cross_entropy(train, test, 2, V)
    assert 0 < bi < uni < math.log(V)
    cycle = torch.arange(5).repeat(40)  # a deterministic language: the bigram knows every next word
    assert T.ngram_cross_entropy(cycle, cycle, 2, 5, smooth=1e-6) < 1e-3
    assert abs(T.ngram_cross_entropy(cycle, cycle, 1, 5, smooth=1e-6) - math.log(5)) < 1e-3
    sampled = T.bigram_generate(cycle, 0, 9, 5, n_samples=2)
    assert torch.equal(sampled, torch.arange(10).remainder(5).expand(2, 10))


def test_pointer_chase_follows_the_pointers() -> None:
    p, y = T.pointer_chase(50, n=8, hops=3, seed=0)
    assert p.shape == y.shape == (50, 8) and p.max() < 8
    r, i = 7, 5
    assert y[r, i] == p[r, p[r, p[r, i]]]


def test_number_words_and_pairs() -> None:
    assert T.number_words(0) == ["zero"] and T.number_words(13) == ["thirteen"]
    assert T.number_words(342) == "three hundred forty two".split()
    assert T.number_words(810) == "eight hundred ten".split() and T.number_words(900) == ["nine", "hundred"]
    with pytest.raises(ValueError):
        T.number_words(1000)
    src, tgt = T.translation_pairs([7, 342])
    assert src.tolist() == [[0, 0, 8], [4, 5, 3]]  # padded on the left; digit c is token c + 1
    assert [T.TGT[i] for i in tgt[1]] == ["<s>", "three", "hundred", "forty", "two", "</s>"]
    assert [T.TGT[i] for i in tgt[0]] == ["<s>", "seven", "</s>", "<pad>", "<pad>", "<pad>"]


def test_bag_baseline() -> None:
    x = torch.tensor([[1, 1, 1, 2]])
    # position 3 (digit 2): the rest is {1, 1, 1}, guess 1; positions 0-2: rest {1, 1, 2}, guess 1
    assert T.bag_baseline(x, torch.tensor([[1, 1, 1, 1]])) == 1.0
    assert T.bag_baseline(x, x.flip(1)) == 0.75
    g = torch.Generator().manual_seed(0)
    X = torch.randint(0, 10, (500, 10), generator=g)
    assert 0.2 < T.bag_baseline(X, X.flip(1)) < 0.4


@pytest.mark.parametrize("positions", ["add", "concat", "none"])
def test_token_transformer_positions(positions: str) -> None:
    torch.manual_seed(0)
    net = T.TokenTransformer(10, 6, d=32, H=4, m=64, L=2, positions=positions, p=8).eval()
    x = torch.randint(0, 10, (3, 6))
    logits, alphas = net(x, return_attention=True)
    assert logits.shape == (3, 6, 10) and len(alphas) == 2 and alphas[0].shape == (3, 4, 6, 6)
    perm = torch.tensor([3, 1, 5, 0, 2, 4])
    with torch.no_grad():
        equivariant = torch.allclose(net(x[:, perm]), net(x)[:, perm], atol=1e-5)
    assert equivariant == (positions == "none")
    if positions == "concat":
        assert net.embed.embedding_dim == 24
    with pytest.raises(ValueError):
        T.TokenTransformer(10, 6, positions="both")


def test_causal_token_transformer_and_generate() -> None:
    torch.manual_seed(0)
    net = T.TokenTransformer(10, 8, d=32, H=4, m=64, L=2, causal=True).eval()
    x = torch.randint(0, 10, (2, 8))
    x2 = x.clone()
    x2[:, -1] = (x2[:, -1] + 1) % 10
    with torch.no_grad():
        assert torch.allclose(net(x)[:, :-1], net(x2)[:, :-1], atol=1e-6)
    out = T.generate(net, x[:, :3], steps=7, n=8)
    assert out.shape == (2, 10) and torch.equal(out[:, :3], x[:, :3])
    loss, logs = T.next_token_loss(net, x[:, :-1], x[:, 1:])
    assert loss.item() > 0 and 0 <= logs["acc"] <= 1


def test_translator_shapes_and_causal_decoder() -> None:
    torch.manual_seed(0)
    net = T.Translator(3, 6, d=32, H=4, m=64, L=1).eval()
    src, tgt = T.translation_pairs([342, 7])
    logits, cross = net(src, tgt[:, :-1], return_attention=True)
    assert logits.shape == (2, 5, len(T.TGT)) and cross.shape == (2, 4, 5, 3)
    assert torch.allclose(cross.sum(-1), torch.ones(2, 4, 5))
    changed = tgt.clone()
    changed[:, 4] = 5
    with torch.no_grad():
        assert torch.allclose(net(src, tgt[:, :-1])[:, :4], net(src, changed[:, :-1])[:, :4], atol=1e-6)
    out = net.translate(src, 6)
    assert out.shape == (2, 6) and (out[:, 0] == T.TGT.index("<s>")).all()
