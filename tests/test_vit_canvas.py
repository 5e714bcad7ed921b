"""Tests for the hybrid ViT (aria_utils.vit.HybridViT) and notebook 07's benchmark (aria_utils.vit_canvas)."""
import pytest
import torch

from aria_utils import vit as V
from aria_utils import vit_canvas as C
from aria_utils.checkpoints import CheckpointError, save_checkpoint


def test_hybrid_tokens_lie_on_the_patch_grid_and_see_their_patch():
    torch.manual_seed(0)
    m = V.HybridViT(image_size=16, patch=4, d=16, depth=1, H=2).eval()
    x = torch.zeros(1, 1, 16, 16)
    assert m.tokens(x).shape == (1, 17, 16) and m.grid == 4
    logits, alphas = m(x, return_attention=True)
    assert logits.shape == (1, 10) and alphas.shape == (1, 1, 2, 17, 17)
    # a change inside patch (row 1, column 2) moves its token, and not a token two patches away
    y = x.clone()
    y[0, 0, 5, 9] = 1.0
    diff = (m.tokens(y) - m.tokens(x)).abs().sum(-1)[0, 1:].reshape(4, 4)
    assert diff[1, 2] > 0 and diff[3, 0] == 0
    with pytest.raises(ValueError):
        V.HybridViT(image_size=18, patch=6)
    with pytest.raises(ValueError):
        m(torch.rand(1, 1, 12, 12))


def test_new_hybrid_is_seeded_and_small_cnn_is_position_free():
    a, b = C.new_hybrid(3), C.new_hybrid(3)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    cnn = C.small_cnn().eval()
    x = torch.zeros(2, 1, 48, 48)
    x[0, 0, 16:24, 16:24] = 1.0
    x[1, 0, 24:32, 24:32] = 1.0  # the same square 8 px further (the pooling stride), away from the borders
    with torch.no_grad():
        out = cnn(x)
    assert out.shape == (2, 10) and torch.allclose(out[0], out[1], atol=1e-5)


def test_flip_loss_is_cross_entropy_on_flip_invariant_inputs():
    torch.manual_seed(0)
    m = C.small_cnn().eval()
    x = torch.rand(4, 1, 48, 48)
    x = (x + x.flip(-1)) / 2  # symmetric images: the flip changes nothing
    y = torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        assert torch.allclose(C.flip_loss(m, x, y)[0], torch.nn.functional.cross_entropy(m(x), y), atol=1e-5)


def test_train_classifier_learns_and_the_checkpoint_round_trips(tmp_path):
    torch.manual_seed(0)
    n = 256
    label = torch.randint(0, 2, (n,))
    image = torch.zeros(n, 1, 48, 48)
    image[label == 1, :, 8:40, 20:28] = 1.0  # a vertical bar (flip-invariant) or nothing
    m = C.new_hybrid(0)
    hist = C.train_classifier(m, {"image": image, "label": label}, 30, progress=False)
    assert hist["steps"] == 30
    with torch.no_grad():
        assert (m.eval()(image).argmax(-1) == label).float().mean() > 0.95
    path = save_checkpoint(tmp_path / "h.pt", m, C.hybrid_config(30, 0), {"command": "test"})
    loaded, meta = C.load_shipped_hybrid(path)
    assert meta["command"] == "test" and meta["config"]["steps"] == 30
    assert torch.equal(loaded.state_dict()["head.weight"], m.state_dict()["head.weight"])
    with pytest.raises(FileNotFoundError, match="vit_canvas"):
        C.load_shipped_hybrid(tmp_path / "missing.pt")
    save_checkpoint(tmp_path / "other.pt", m, {**C.hybrid_config(30, 0), "arch": {"d": 32}})
    with pytest.raises(CheckpointError):
        C.load_shipped_hybrid(tmp_path / "other.pt")


def test_shipped_hybrid_checkpoint_loads():
    model, meta = C.load_shipped_hybrid()
    assert meta["config"]["arch"] == C.ARCH and meta["config"]["canvas"]["scale"] == list(C.CANVAS["scale"])
    assert "python -m aria_utils.vit_canvas" in meta["command"] and meta["trained_on"]
    assert not model.training
