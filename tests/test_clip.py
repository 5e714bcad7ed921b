"""Tests for aria_utils.clip_toy: captions, tokenizer, images, encoders, and the open_clip plumbing (random weights)."""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aria_utils import clip_toy as ct
from aria_utils.checkpoints import CheckpointError


@pytest.fixture(scope="module")
def tok() -> ct.WordTokenizer:
    return ct.WordTokenizer.from_templates()


def _items(n: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(n, 28, 28, dtype=torch.uint8)
    x[:, 6:22, 8:20] = torch.randint(100, 256, (n, 16, 12), generator=g, dtype=torch.uint8)
    return x


def test_tokenizer_round_trip_and_errors(tok):
    texts = [ct.caption(c, k, s, t) for c in range(10) for k in range(6) for s in range(2) for t in range(5)]
    texts += [ct.caption(c, k, s, t, plain=True) for c in range(10) for k in range(6) for s in range(2) for t in range(4)]
    texts += [ct.caption(c, k, template=t, count=m, say_count=y) for c in range(10) for k in range(6) for t in range(5)
              for m in (1, 2, 3) for y in (True, False)]
    ids = tok.encode(texts)
    assert ids.shape == (len(texts), tok.context_length)
    assert tok.decode(ids) == texts
    assert ((ids == tok.eos).sum(1) == 1).all() and (ids[:, 0] == tok.sos).all()
    assert tok.encode("A Photo of a RED bag").equal(tok.encode("a photo of a red bag"))
    with pytest.raises(ValueError, match="unknown words"):
        tok.encode("a photo of a hat")
    assert tok.encode("a photo of a hat", strict=False)[0, 5] == tok.unk
    with pytest.raises(ValueError, match="at most"):
        tok.encode(" ".join(["bag"] * 20))


def test_held_out_combos_cover_every_colour_twice():
    held = ct.held_out_combos()
    assert len(set(held)) == 12
    assert sorted(np.bincount([k for _, k in held], minlength=6).tolist()) == [2] * 6
    allowed = ct.allowed_table(held)
    assert allowed.sum() == 48 and (allowed.sum(1) >= 4).all()


def test_render_puts_the_tinted_item_on_its_side():
    x = _items(4)
    img = ct.render(x, torch.tensor([0, 1, 4, 4]), torch.tensor([0, 1, 0, 1]))
    assert img.shape == (4, 3, 28, 56) and img.min() >= 0 and img.max() <= 1
    assert img[0, :, :, 28:].abs().sum() == 0 and img[0, :, :, :28].sum() > 0
    assert img[1, :, :, :28].abs().sum() == 0 and img[1, :, :, 28:].sum() > 0
    red, blue = img[0].sum((1, 2)), img[2].sum((1, 2))  # channel totals
    assert red.argmax() == 0 and blue.argmax() == 2
    with pytest.raises(ValueError):
        ct.render(torch.zeros(2, 14, 14, dtype=torch.uint8), torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long))


def test_render_counts_places_count_copies():
    x = _items(6)
    count = torch.tensor([1, 2, 3, 3, 2, 1])
    img = ct.render_counts(x, torch.zeros(6, dtype=torch.long), count, torch.Generator().manual_seed(0))
    assert img.shape == (6, 3, 28, 56)
    cells = img.sum(1).reshape(6, 2, 14, 4, 14).permute(0, 1, 3, 2, 4).flatten(3).sum(-1)  # (N, 2, 4)
    assert ((cells > 0).flatten(1).sum(1) == count).all()
    with pytest.raises(ValueError):
        ct.render_counts(x[:1], torch.zeros(1, dtype=torch.long), torch.tensor([4]))


def test_sample_pairs_avoids_held_out_combos(tok):
    allowed = ct.allowed_table(ct.held_out_combos())
    cls = torch.arange(10).repeat(20)
    b = ct.sample_pairs(_items(200), cls, allowed, tok, generator=torch.Generator().manual_seed(0))
    assert b["image"].shape == (200, 3, 28, 56) and b["tokens"].shape == (200, tok.context_length)
    assert allowed[cls, b["colour"]].all()
    texts = tok.decode(b["tokens"])
    assert all(ct.CLASS_WORDS[c] in t.split() and ct.COLOUR_WORDS[k] in t.split()
               for c, k, t in zip(cls.tolist(), b["colour"].tolist(), texts))
    assert not any(w in t.split() for t in texts for w in ct.COUNT_WORDS)  # single items: no count said
    assert (b["count"] == 0).all() and not b["plain"].any()


def test_sample_pairs_plain_captions_and_counts(tok):
    allowed = ct.allowed_table(ct.held_out_combos())
    count_allowed = ct.allowed_table(ct.held_out_counts(), 3, first=1)
    assert count_allowed.shape == (10, 3) and count_allowed.sum() == 20 and count_allowed.any(0).all()
    cls = torch.arange(10).repeat(40)
    b = ct.sample_pairs(_items(400), cls, allowed, tok, p_plain=0.5, p_count=0.5, count_allowed=count_allowed,
                        generator=torch.Generator().manual_seed(0))
    texts = tok.decode(b["tokens"])
    plain, count = b["plain"], b["count"]
    assert 0.35 < plain.float().mean() < 0.65 and 0.35 < (count > 0).float().mean() < 0.65
    for c, k, m, p, t in zip(cls.tolist(), b["colour"].tolist(), count.tolist(), plain.tolist(), texts):
        words = t.split()
        assert (ct.CLASS_WORDS[c] if m <= 1 else ct.PLURALS[c]) in words and (ct.COLOUR_WORDS[k] in words) != p
        assert (m > 0) == any(w in words for w in ct.COUNT_WORDS)
        assert m == 0 or (ct.COUNT_WORDS[m - 1] in words and count_allowed[c, m - 1])
    cells = (b["image"].sum(1) > 0).reshape(400, 2, 14, 4, 14).permute(0, 1, 3, 2, 4).flatten(3).any(-1)
    assert (cells.flatten(1).sum(1)[count > 0] == count[count > 0]).all()  # counting images hold `count` copies


def test_image_encoder_paths_see_shape_and_colour_apart():
    torch.manual_seed(0)
    f_v = ct.ImageEncoder(width=8, d_out=32).eval()
    x = _items(2)
    red, blue = ct.render(x, torch.tensor([0, 0]), torch.zeros(2, dtype=torch.long)), \
        ct.render(x, torch.tensor([4, 4]), torch.zeros(2, dtype=torch.long))
    with torch.no_grad():
        i_red, i_blue = red.amax(1, keepdim=True), blue.amax(1, keepdim=True)
        shape = lambda i: f_v.shape(i / i.amax(dim=(2, 3), keepdim=True)).flatten(1)
        assert not torch.allclose(i_red, i_blue)  # the tints differ in brightness ...
        assert torch.allclose(shape(i_red), shape(i_blue), atol=1e-5)  # ... which the shape path does not see
        assert not torch.allclose(f_v(red), f_v(blue))  # the colour path does


def test_toy_clip_shapes_and_eos_pooling(tok):
    torch.manual_seed(0)
    m = ct.ToyCLIP(len(tok), tok.context_length, tok.eos).eval()
    x = torch.rand(3, 3, 28, 56)
    ids = tok.encode(["a red bag", "a photo of a blue coat on the left", "boot"])
    assert m.encode_image(x).shape == (3, 64) and m.encode_text(ids).shape == (3, 64)
    junk = ids.clone()
    junk[0, 5:] = 7  # words after <eos> must not change the text embedding (causal mask)
    with torch.no_grad():
        assert torch.allclose(m.encode_text(ids)[0], m.encode_text(junk)[0], atol=1e-6)
        assert not torch.allclose(m.encode_text(ids)[0], m.encode_text(ids)[1])
    assert abs(m.tau.item() - 0.07) < 1e-4 and m.log_inv_tau.requires_grad
    v = ct.embed_images(m, x)
    u = ct.embed_texts(m, tok, ["a red bag", "a blue coat"])
    assert torch.allclose(v.norm(dim=-1), torch.ones(3)) and u.shape == (2, 64)


def test_open_clip_plumbing_with_random_weights():
    open_clip = pytest.importorskip("open_clip")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tokenizer = open_clip.get_tokenizer("ViT-B-32")  # the real CLIP vocabulary ships in the wheel
    ids = tokenizer(["a photo of a cat", "a photo of a rocket"])
    assert ids.shape == (2, 77) and ids[0, 0] != 0
    torch.manual_seed(0)
    # ViT-S-32 builds faster than ViT-B-32 on a CPU; the code path is the same.
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-S-32", pretrained=None)
    photos = [np.zeros((300, 200, 3), np.uint8), np.full((120, 160, 3), 200, np.uint8)]
    p = ct.open_clip_zero_shot(model, preprocess, tokenizer, photos, ["a cat", "a rocket", "coffee"])
    assert p.shape == (2, 3) and torch.allclose(p.sum(1), torch.ones(2), atol=1e-5)
    with pytest.raises(ValueError):
        ct.open_clip_zero_shot(model, preprocess, tokenizer, [], ["a cat"])


def test_rare_counts_keep_the_images_and_drop_the_count_words(tok):
    allowed = ct.allowed_table(ct.held_out_combos())
    cls = torch.arange(10).repeat(40)
    b = ct.sample_pairs(_items(400), cls, allowed, tok, p_count=1.0, p_say_count=0.0,
                        generator=torch.Generator().manual_seed(0))
    texts = tok.decode(b["tokens"])
    assert (b["count"] > 0).all() and not b["said"].any()
    assert not any(w in t.split() for t in texts for w in ct.COUNT_WORDS)
    assert all((ct.PLURALS[c] in t.split()) == (m > 1) for c, m, t in zip(cls.tolist(), b["count"].tolist(), texts))
    assert ct.caption(8, 0, template=0, count=2) == "a photo of two red bags"
    assert ct.caption(8, 0, template=0, count=1, say_count=False) == "a photo of a red bag"


def test_caption_fits_reads_every_named_attribute():
    cls, colour = torch.tensor([8, 8, 8, 9]), torch.tensor([0, 0, 4, 0])
    side, count = torch.tensor([0, 1, 0, 0]), torch.tensor([0, 0, 2, 0])
    fits = ct.caption_fits(["a red bag", "the bag on the right", "two blue bags", "a photo of a bag", "three bags"],
                           cls, colour, side, count)
    assert fits.tolist() == [[True, True, False, False], [False, True, False, False], [False, False, True, False],
                             [True, True, False, False], [False, False, False, False]]


def test_contrastive_loss_is_the_symmetric_formula():
    g = torch.Generator().manual_seed(0)
    v, u = torch.randn(6, 8, generator=g, dtype=torch.float64), torch.randn(6, 8, generator=g, dtype=torch.float64)
    s = F.normalize(v, dim=-1) @ F.normalize(u, dim=-1).T / 0.1
    l_vu, l_uv = torch.logsumexp(s, 1) - s.diag(), torch.logsumexp(s.T, 1) - s.diag()
    for lam in (0.0, 0.3, 1.0):
        assert torch.allclose(ct.contrastive_loss(v, u, torch.tensor(0.1), lam), (lam * l_vu + (1 - lam) * l_uv).mean())


def test_train_clip_and_the_shipped_checkpoint_round_trip(tmp_path):
    out = tmp_path / "clip_toy_rare.pt"
    assert ct.main(["--counts", "rare", "--steps", "2", "--out", str(out)]) == 0
    model, tok, meta = ct.load_shipped("rare", out)
    assert meta["config"]["counts"] == "rare" and meta["config"]["steps"] == 2 and len(meta["history"]["loss"]) == 2
    assert meta["command"].startswith("python -m aria_utils.clip_toy") and "trained_on" in meta
    assert 0 <= meta["captions_with_count"] <= meta["captions"] == 2 * 256 and not model.training
    with pytest.raises(CheckpointError, match="another model"):
        ct.load_shipped("frequent", out)
