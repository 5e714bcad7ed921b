"""The real Segment Anything: its ViT-B weights (found in `cache/` or downloaded, sha256-checked), the model built
by segment-anything and loaded `weights_only=True`, a tiny random SAM for offline tests, and a point prompt's masks."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

SAM_VIT_B_URL = "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"
SAM_VIT_B_SHA256 = "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"


def host_reachable(url: str, timeout: float = 1.5) -> bool:
    """True when the host of `url` answers a TCP connection on 443; `ARIA_OFFLINE=1` gives False without trying."""
    import socket
    from urllib.parse import urlparse

    if os.environ.get("ARIA_OFFLINE", "") not in ("", "0"):
        return False
    try:
        with socket.create_connection((urlparse(url).hostname, 443), timeout=timeout):
            return True
    except OSError:
        return False


def download_with_progress(url: str, sha256: str, dest: Path, timeout: float = 120.0) -> Path:
    """Download `url` by chunks of 1 MB with a progress display, check its sha256, then write `dest` atomically."""
    import hashlib
    import urllib.request

    from .io import atomic_write_bytes
    from .progress import Progress

    h, chunks = hashlib.sha256(), []
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            size = int(r.headers.get("Content-Length") or 0)
            bar = Progress(total=-(-size // 2 ** 20) if size else None, desc=f"downloading {Path(url).name}", unit="MB")
            while chunk := r.read(2 ** 20):
                h.update(chunk)
                chunks.append(chunk)
                bar.update(1)
            bar.close()
    except OSError as e:
        raise ConnectionError(f"Could not download {url} ({e}). Place the file at {dest} by hand.") from e
    if h.hexdigest() != sha256:
        raise ValueError(f"Checksum mismatch for {url}: expected sha256 {sha256}, got {h.hexdigest()}. "
                         "Nothing was written.")
    return atomic_write_bytes(dest, b"".join(chunks))


def sam_vit_b_weights(folder: str | Path | None = None, download: bool = True) -> Path:
    """The official SAM ViT-B checkpoint: found in `folder` (default `cache/`) or downloaded from SAM's own host
    with a progress display (sha256-checked)."""
    from .checkpoints import cache_dir
    from .io import sha256_of

    dest = Path(folder or cache_dir()) / Path(SAM_VIT_B_URL).name
    if dest.exists() and sha256_of(dest) == SAM_VIT_B_SHA256:
        return dest
    if not download or not host_reachable(SAM_VIT_B_URL):
        raise ConnectionError(f"no SAM ViT-B weights at {dest} and no network to fetch them "
                              f"(download {SAM_VIT_B_URL}, 375 MB, and place it there).")
    return download_with_progress(SAM_VIT_B_URL, SAM_VIT_B_SHA256, dest)


def load_sam(path: str | Path, variant: str = "vit_b") -> nn.Module:
    """Build segment-anything's `sam_model_registry[variant]` and load a checkpoint (`weights_only=True`)."""
    from segment_anything import sam_model_registry

    if variant not in sam_model_registry:
        raise ValueError(f"variant={variant!r}: use one of {sorted(sam_model_registry)}.")
    sam = sam_model_registry[variant](checkpoint=None)  # random weights, then the checkpoint
    sam.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return sam.eval()


def tiny_sam(img_size: int = 64, embed_dim: int = 32, seed: int = 0) -> nn.Module:
    """A SAM with random weights built from segment_anything's own modules, small enough for tests."""
    patch = 16
    if img_size % patch:
        raise ValueError(f"img_size={img_size} must be a multiple of the patch size {patch}.")
    grid = img_size // patch
    with torch.random.fork_rng():  # leave the caller's random stream untouched
        torch.manual_seed(seed)
        sam = _tiny_sam(img_size, embed_dim, patch, grid)
    return sam.eval()


def _tiny_sam(img_size: int, embed_dim: int, patch: int, grid: int) -> nn.Module:
    from functools import partial

    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder as SamPromptEncoder, Sam, \
        TwoWayTransformer

    return Sam(
        image_encoder=ImageEncoderViT(img_size=img_size, patch_size=patch, embed_dim=embed_dim, depth=1, num_heads=2,
                                      out_chans=embed_dim, norm_layer=partial(nn.LayerNorm, eps=1e-6),
                                      use_rel_pos=True, window_size=0),
        prompt_encoder=SamPromptEncoder(embed_dim=embed_dim, image_embedding_size=(grid, grid),
                                        input_image_size=(img_size, img_size), mask_in_chans=4),
        mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer_dim=embed_dim, iou_head_depth=2,
                                 iou_head_hidden_dim=32,
                                 transformer=TwoWayTransformer(depth=1, embedding_dim=embed_dim, mlp_dim=64,
                                                               num_heads=2)),
    )


def sam_point_masks(predictor: "segment_anything.SamPredictor", point: tuple[float, float],  # noqa: F821
                    ) -> tuple[np.ndarray, np.ndarray]:
    """One foreground point -> SAM's three masks `bool [3, H, W]` and scores `[3]`, best score first."""
    masks, scores, _ = predictor.predict(point_coords=np.array([point], dtype=np.float32),
                                         point_labels=np.array([1]), multimask_output=True)
    order = np.argsort(-scores)
    return masks[order], scores[order]
