"""Tests for the hybrid ViT (aria_utils.vit.HybridViT) and notebook 07's benchmark (aria_utils.vit_canvas)."""
import pytest
import torch

from aria_utils import vit as V
from aria_utils import vit_canvas as VC
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


def test_new_model_is_seeded_and_small_cnn_is_position_free():
    for kind in VC.MODELS:
        a, b = VC.new_model(kind, 3), VC.new_model(kind, 3)
        assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(ValueError):
        VC.new_model("resnet")
    cnn = VC.small_cnn().eval()
    x = torch.zeros(2, 1, 48, 48)
    x[0, 0, 16:24, 16:24] = 1.0
    x[1, 0, 24:32, 24:32] = 1.0  # the same square 8 px further (the pooling stride), away from the borders
    with torch.no_grad():
        out = cnn(x)
    assert out.shape == (2, 10) and torch.allclose(out[0], out[1], atol=1e-5)


def test_distractors_stay_off_the_item_box_and_are_fragments_of_the_pool():
    images = torch.zeros(4, 1, 48, 48)
    boxes = torch.tensor([[10, 10, 30, 30]] * 4, dtype=torch.float)
    images[:, 0, 10:30, 10:30] = 0.5
    pool = torch.full((3, 28, 28), 200, dtype=torch.uint8)
    out = VC.add_distractors(images, boxes, pool, k=6, size=(5, 9), seed=0)
    assert torch.equal(out[:, :, 9:31, 9:31], images[:, :, 9:31, 9:31])  # the item's box (+1 px) is untouched
    added = (out != images)[:, 0]
    assert added.any() and torch.allclose(out[:, 0][added], torch.tensor(200 / 255))
    assert added.flatten(1).sum(1).min() >= 25  # at least one 5 x 5 fragment on each canvas
    assert torch.equal(out, VC.add_distractors(images, boxes, pool, k=6, size=(5, 9), seed=0))  # seeded


def test_flip_loss_is_cross_entropy_on_flip_invariant_inputs():
    torch.manual_seed(0)
    m = VC.small_cnn().eval()
    x = torch.rand(4, 1, 48, 48)
    x = (x + x.flip(-1)) / 2  # symmetric images: the flip changes nothing
    y = torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        assert torch.allclose(VC.flip_loss(m, x, y)[0], torch.nn.functional.cross_entropy(m(x), y), atol=1e-5)


def test_train_classifier_learns_and_the_checkpoint_round_trips(tmp_path):
    torch.manual_seed(0)
    n = 256
    label = torch.randint(0, 2, (n,))
    image = torch.zeros(n, 1, 48, 48)
    image[label == 1, :, 8:40, 20:28] = 1.0  # a vertical bar (flip-invariant) or nothing
    m = VC.new_model("vit", 0)
    hist = VC.train_classifier(m, {"image": image, "label": label}, 30, progress=False)
    assert hist["steps"] == 30
    with torch.no_grad():
        assert (m.eval()(image).argmax(-1) == label).float().mean() > 0.95
    path = save_checkpoint(tmp_path / "v.pt", m, VC.shipped_config("vit", n, 30, 0), {"command": "test"})
    loaded, meta = VC.load_shipped(path)
    assert meta["command"] == "test" and meta["config"]["steps"] == 30 and isinstance(loaded, V.ViT)
    assert torch.equal(loaded.state_dict()["head.weight"], m.state_dict()["head.weight"])
    with pytest.raises(FileNotFoundError, match="vit_canvas"):
        VC.load_shipped(tmp_path / "missing.pt")
    save_checkpoint(tmp_path / "other.pt", m, {**VC.shipped_config("vit", n, 30, 0), "canvas": {"S": 28}})
    with pytest.raises(CheckpointError):
        VC.load_shipped(tmp_path / "other.pt")


@pytest.mark.parametrize("kind,n", [(k, n) for k in ("vit", "cnn") for n in VC.DATA_SIZES])
def test_shipped_checkpoints_load(kind, n):
    model, meta = VC.load_shipped(VC.shipped_path(kind, n))
    assert meta["config"]["model"] == kind and meta["config"]["n_train"] == n
    assert "python -m aria_utils.vit_canvas" in meta["command"] and meta["trained_on"] and meta["loss_every_10"]
    assert not model.training
