import numpy as np
import pytest
import torch

import aria_utils as A
from aria_utils import data


def test_fashion_mnist_counts_and_shapes():
    x, y = A.load_fashion_mnist("train")
    xt, yt = A.load_fashion_mnist("test")
    assert x.shape == (60000, 28, 28) and x.dtype == torch.uint8
    assert xt.shape == (10000, 28, 28) and yt.shape == (10000,)
    assert torch.bincount(y).tolist() == [6000] * 10


def test_fashion_mnist_missing_names_all_three_ways(monkeypatch, tmp_path):
    monkeypatch.setenv("ARIA_DATA", str(tmp_path))
    monkeypatch.setattr(data, "DEBIAN_FASHION_DIR", tmp_path / "nowhere")
    with pytest.raises(A.DatasetNotFound) as e:
        A.load_fashion_mnist("train", download=False)
    msg = str(e.value)
    assert "FashionMNIST/raw" in msg and "apt-get install dataset-fashion-mnist" in msg and "torchvision" in msg


def test_fashion_mnist_from_project_folder(monkeypatch, tmp_path):
    """Files placed (unzipped) in data/FashionMNIST/raw are used first."""
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    imgs = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    (raw / "t10k-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 3]) + (2).to_bytes(4, "big")
                                                 + (28).to_bytes(4, "big") * 2 + imgs.tobytes())
    (raw / "t10k-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1]) + (2).to_bytes(4, "big") + bytes([3, 7]))
    monkeypatch.setenv("ARIA_DATA", str(tmp_path))
    x, y = A.load_fashion_mnist("test", download=False)
    assert torch.equal(x, torch.from_numpy(imgs)) and y.tolist() == [3, 7]


def test_truncated_idx_is_reported(tmp_path):
    p = tmp_path / "bad-idx3-ubyte"
    p.write_bytes(bytes([0, 0, 8, 3]) + (5).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\0" * 10)
    with pytest.raises(ValueError, match="truncated"):
        data.read_idx(p)


def test_unknown_names_are_clear_errors():
    with pytest.raises(ValueError, match="Unknown dataset"):
        A.load_dataset("cifar10")
    with pytest.raises(ValueError, match="Unknown photo"):
        A.load_photo("lena")
    with pytest.raises(ValueError, match="split"):
        A.load_fashion_mnist("val")


def test_other_datasets_and_photos():
    x, y = A.load_animal_mnist()
    assert x.shape == (10000, 28, 28) and torch.bincount(y).tolist() == [1000] * 10
    x, y = A.load_mnist_subset()
    assert x.shape == (5000, 28, 28) and torch.bincount(y).tolist() == [500] * 10
    for name in ("chelsea", "camera", "china"):
        img = A.load_photo(name)
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8


def test_per_class_subset_is_deterministic_and_balanced():
    _, y = A.load_fashion_mnist("test")
    a, b = A.per_class_subset(y, 7, seed=1), A.per_class_subset(y, 7, seed=1)
    assert torch.equal(a, b) and len(a) == 70
    assert torch.bincount(y[a]).tolist() == [7] * 10
    assert not torch.equal(a, A.per_class_subset(y, 7, seed=2))
    with pytest.raises(ValueError, match="fewer"):
        A.per_class_subset(y, 5000)


def test_to_imagenet_shapes_and_errors():
    x = torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8)
    out = A.to_imagenet(x, 64)
    assert out.shape == (4, 3, 64, 64) and out.min() >= -1 and out.max() <= 1
    with pytest.raises(ValueError, match="expected images"):
        A.to_imagenet(torch.zeros(4, 2, 28, 28), 64)


def test_make_canvas_boxes_contain_masks():
    x, y = A.load_fashion_mnist("test")
    c = A.make_canvas(x[:20], y[:20], canvas=48, scale=(0.3, 0.6), seed=0)
    assert c["image"].shape == (20, 1, 48, 48) and c["mask"].shape == (20, 48, 48)
    for m, (x0, y0, x1, y1) in zip(c["mask"], c["box"].long()):
        assert m.sum() > 0 and m[y0:y1, x0:x1].sum() == m.sum()
    with pytest.raises(ValueError, match="28x28"):
        A.make_canvas(torch.zeros(2, 32, 32), torch.zeros(2))


def test_every_photo_is_uint8_rgb_with_full_range():
    for name in list(A.data.PHOTOS) + ["china", "flower"]:
        img = A.load_photo(name)
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8, name
        assert img.max() > 100, f"{name} is nearly black (a 0/1 image stored as bytes?)"
    assert set(np.unique(A.load_photo("horse")).tolist()) == {0, 255}  # a boolean silhouette
