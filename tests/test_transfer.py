"""Tests for aria_utils.transfer: the trunk/tail split, freezing, caching, augmentation, target loading."""
import pytest
import timm
import torch
import torch.nn as nn

from aria_utils import transfer as T


@pytest.fixture(scope="module")
def net() -> nn.Module:
    torch.manual_seed(0)
    m = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=7)
    # non-trivial BatchNorm statistics, so that train/eval mode differences would show
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
    return m.eval()


def test_flat_blocks_and_stage_ends(net):
    assert len(T.flat_blocks(net)) == 16
    assert T.stage_ends(net) == [1, 3, 5, 8, 11, 15, 16]
    with pytest.raises(TypeError):
        T.flat_blocks(nn.Linear(2, 2))


@pytest.mark.parametrize("k", [0, 5, 11, 16])
def test_split_composes_to_the_full_network(net, k):
    trunk, tail = T.split_efficientnet(net, k)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(tail.eval()(trunk.eval()(x)), net.eval()(x), atol=1e-5)
    # modules are shared, not copied
    assert sum(p.numel() for p in trunk.parameters()) + sum(p.numel() for p in tail.parameters()) == \
        sum(p.numel() for p in net.parameters())


def test_split_rejects_bad_k(net):
    with pytest.raises(ValueError, match="split point"):
        T.split_efficientnet(net, 17)


def test_freeze_keeps_weights_and_bn_stats_while_tail_trains(net):
    import copy

    m = copy.deepcopy(net)
    trunk, tail = T.split_efficientnet(m, 11)
    T.freeze(trunk)
    before = {k: v.clone() for k, v in trunk.state_dict().items()}
    tail_before = [p.clone() for p in tail.parameters()]
    assert T.count_params(trunk, trainable_only=True) == 0
    opt = torch.optim.SGD([p for p in tail.parameters() if p.requires_grad], lr=0.1)
    h = T.cache_stages(m, torch.randint(0, 255, (8, 28, 28), dtype=torch.uint8), 64, [11])[0][11]
    tail.train()
    loss = tail(h).logsumexp(-1).mean()
    loss.backward()
    opt.step()
    assert all(torch.equal(before[k], v) for k, v in trunk.state_dict().items())
    assert any(not torch.equal(a, b) for a, b in zip(tail_before, tail.parameters()))


def test_cache_stages_matches_trunks_and_timm_head(net):
    imgs = torch.randint(0, 255, (5, 28, 28), dtype=torch.uint8)
    spatial, pooled = T.cache_stages(net, imgs, 64, [8, 11, 15], batch_size=2)
    x = T.imagenet_batch(64, channels_last=False)(imgs)
    with torch.no_grad():
        for k, shape in ((8, (5, 80, 4, 4)), (11, (5, 112, 4, 4)), (15, (5, 192, 2, 2))):
            ref = T.split_efficientnet(net, k)[0].eval()(x)
            assert spatial[k].shape == shape
            # float32 sums in another order (batch size, memory format, threads): 1e-4 on values up to ~20
            assert torch.allclose(spatial[k], ref, rtol=1e-4, atol=1e-4)
        head = net.forward_head(net.forward_features(x), pre_logits=True)
    assert [f.shape[1] for f in pooled.values()] == [16, 24, 40, 80, 112, 192, 320, 1280]
    assert torch.allclose(pooled["head"], head, atol=1e-4)
    maps = T.feature_maps(net, T.imagenet_batch(64)(imgs[:3]), [1, 5])
    assert maps[1].shape == (3, 24, 16, 16) and maps[5].shape == (3, 192, 2, 2)
    with pytest.raises(ValueError, match="split points"):
        T.cache_stages(net, imgs, 64, [0])


def test_cache_stages_grid_keeps_where_and_averages_to_the_global_pool(net):
    imgs = torch.randint(0, 255, (3, 28, 28), dtype=torch.uint8)
    _, whole = T.cache_stages(net, imgs, 64, [])
    _, grid = T.cache_stages(net, imgs, 64, [], grid=4)
    for s, f in whole.items():
        if s == "head":  # the head keeps its global pooling
            assert torch.allclose(grid[s], f, atol=1e-5)
            continue
        assert grid[s].shape == (3, f.shape[1] * 16)
        # at 64 px every stage map is 16x16 ... 2x2, so the mean of the 4 x 4 cells is the global mean
        assert torch.allclose(grid[s].unflatten(1, (-1, 16)).mean(-1), f, atol=1e-5)


def test_random_shift_flip_is_a_permutation_of_pixels_or_a_shift():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 6 * 6, dtype=torch.float).view(2, 6, 6) + 1
    y = T.random_shift_flip(x, 0, g)
    for a, b in zip(x, y):
        assert torch.equal(b, a) or torch.equal(b, a.flip(-1))
    z = T.random_shift_flip(x, 2, g)
    assert z.shape == x.shape
    # a shift keeps the values (minus those pushed out) and pads with zeros
    assert set(z[z > 0].tolist()) <= set(x.flatten().tolist())


def test_load_target_fashion_and_bad_name():
    d = T.load_target("fashion_mnist")
    assert d["x_train"].shape == (60000, 28, 28) and d["x_test"].shape == (10000, 28, 28)
    assert len(d["classes"]) == 10 and int(d["y_train"].max()) == 9
    with pytest.raises(ValueError, match="Unknown target"):
        T.load_target("cifar1000")


def test_labelled_pool_is_nested_and_balanced():
    y = torch.arange(10).repeat(50)
    d = {"x_train": torch.arange(500), "y_train": y, "x_test": torch.arange(500), "y_test": y}
    pool = T.labelled_pool(d, [5, 20], 10)
    assert len(pool["x_lab"]) == 200 and len(pool["x_test"]) == 100
    small, big = pool["x_lab"][pool["pos"][5]], pool["x_lab"][pool["pos"][20]]
    assert set(small.tolist()) <= set(big.tolist())
    assert torch.bincount(pool["y_lab"][pool["pos"][5]]).tolist() == [5] * 10
    assert len(pool["draws"]) == 1 and torch.equal(pool["draws"][0][0], small)


def test_labelled_pool_draws_are_balanced_and_differ():
    y = torch.arange(10).repeat(50)
    d = {"x_train": torch.arange(500), "y_train": y, "x_test": torch.arange(500), "y_test": y}
    pool = T.labelled_pool(d, [5, 20], 10, draws=3)
    assert torch.equal(pool["draws"][0][0], pool["x_lab"][pool["pos"][5]])
    assert torch.equal(pool["draws"][0][1], pool["y_lab"][pool["pos"][5]])
    for x, yy in pool["draws"]:
        assert torch.bincount(yy).tolist() == [5] * 10 and torch.equal(d["y_train"][x], yy)
    assert not torch.equal(pool["draws"][1][0], pool["draws"][2][0])


def test_logistic_regression_matches_scikit_learn():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 30, generator=g)
    y = torch.arange(4).repeat(60)
    f = centres[y] + 1.5 * torch.randn(240, 30, generator=g)
    for C in (0.01, 1.0):
        ours = T.logistic_regression(f[:120], y[:120], C, max_iter=500)
        z = StandardScaler().fit(f[:120].numpy())
        ref = LogisticRegression(C=C, max_iter=5000, tol=1e-8).fit(z.transform(f[:120].numpy()), y[:120].numpy())
        with torch.no_grad():
            p = ours(f[120:]).softmax(-1).numpy()
        # scikit-learn's std has ddof=0, ours ddof=1: a tiny difference in the scaling, none in the decisions
        assert abs(p - ref.predict_proba(z.transform(f[120:].numpy()))).max() < 0.02
    with pytest.raises(ValueError, match="one label per row"):
        T.logistic_regression(f, y[:10])


def test_mirrored_accuracy_votes_with_the_mirror():
    clf = nn.Linear(2, 2)
    with torch.no_grad():
        clf.weight.copy_(torch.eye(2))
        clf.bias.zero_()
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 1])
    assert T.mirrored_accuracy(clf, f, f, y) == 1.0
    # a mirror that strongly disagrees outvotes a weakly right image
    assert T.mirrored_accuracy(clf, 0.1 * f, 5 * f.flip(-1), y) == 0.0


def test_batchnorm_frozen_keeps_statistics_but_trains_weights(net):
    import copy

    m = copy.deepcopy(net)
    w = T.BatchNormFrozen(m).train()
    bns = [mod for mod in m.modules() if isinstance(mod, nn.BatchNorm2d)]
    assert bns and not any(b.training for b in bns) and m.conv_stem.training
    stats = [b.running_mean.clone() for b in bns]
    gamma = bns[0].weight.clone()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    w(torch.randn(4, 3, 32, 32)).logsumexp(-1).mean().backward()
    opt.step()
    assert all(torch.equal(s, b.running_mean) for s, b in zip(stats, bns))
    assert not torch.equal(gamma, bns[0].weight)


def test_best_match_cosine_finds_a_filter_up_to_sign_and_scale():
    torch.manual_seed(0)
    ref = torch.randn(8, 3, 3, 3)
    w = torch.stack([-2 * ref[3], ref[5] * 0.1])
    assert torch.allclose(T.best_match_cosine(w, ref), torch.ones(2))
    assert (T.best_match_cosine(torch.randn(50, 3, 3, 3), ref) < 1 - 1e-3).all()
    with pytest.raises(ValueError):
        T.best_match_cosine(torch.randn(2, 1, 3, 3), ref)


def test_grey_filters_act_on_a_grey_image_as_the_rgb_ones():
    torch.manual_seed(0)
    w, x = torch.randn(4, 3, 3, 3), torch.rand(2, 1, 8, 8)
    g = T.grey_filters(w)
    assert g.shape == (4, 1, 3, 3)
    assert torch.allclose(nn.functional.conv2d(x.expand(-1, 3, -1, -1), w), nn.functional.conv2d(x, g), atol=1e-5)


def test_loss_fall_and_plateau():
    assert T.loss_fall([5.0] * 8 + [2.0] * 4 + [1.0] * 4) == pytest.approx(0.5)  # quarters: last 1.0 vs 2.0
    flat = [1.0] * 40
    assert T.loss_fall(flat) == 0
    assert T.plateau("flat", flat, epochs=30).counts
    assert not T.plateau("one pass short", flat, epochs=0.4).counts
    assert not T.plateau("a few passes", flat, epochs=5).counts  # flat only because the schedule ended
    falling = [1.0 - 0.01 * i for i in range(40)]
    e = T.plateau("falling", falling, epochs=50, tol=0.05)
    assert not e.counts and e.text.startswith("falling: 50 epochs, loss 13 % lower")
    with pytest.raises(ValueError):
        T.loss_fall([1.0, 0.9])


def _blobs(n: int = 40, d: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    return torch.randn(n, d, generator=g) + 3 * y[:, None].float(), y


def test_linear_accuracy_separates_blobs_and_votes_with_mirrors():
    f, y = _blobs()
    assert T.linear_accuracy(f, y, f, y) == 1.0
    assert T.linear_accuracy(f, y, f, y, f, f) == 1.0  # mirrors identical to the images: the same answer


def test_validation_scores_and_best_stage_pick_the_informative_features():
    f, y = _blobs()
    feats = {"noise": torch.randn(40, 6, generator=torch.Generator().manual_seed(1)), "signal": f}
    score = T.validation_scores(feats, y, Cs=(0.01, 1.0), cap=10, repeats=2)
    assert set(score) == {(s, c) for s in feats for c in (0.01, 1.0)}
    assert score["signal", 1.0] > score["noise", 1.0]
    assert T.best_stage(feats, y, cap=10, repeats=2) == "signal"


def test_remove_dc_leaves_zero_mean_filters():
    w = torch.randn(4, 3, 3, 3) + 5
    out = T.remove_dc(w)
    assert torch.allclose(out.flatten(1).mean(1), torch.zeros(4), atol=1e-6)
    assert torch.allclose(out - w, (out - w)[:, :1, :1, :1].expand_as(w))  # one constant per filter


def test_new_head_and_finetune_tail_train_only_the_tail(net):
    m = T.new_head(net, 3)
    assert m.classifier[-1].out_features == 3 and net.classifier.out_features == 7  # the source is untouched
    trunk = T.split_efficientnet(m, 15)[0].eval()
    with torch.no_grad():
        h = trunk(torch.randn(8, 3, 64, 64))
    model, hist = T.finetune_tail(net, 15, h, torch.arange(8) % 3, 3, n_classes=3, progress=False)
    assert hist.steps == 3 and not model.training
    src = dict(net.named_parameters())
    assert all(torch.equal(p, src[k]) for k, p in model.named_parameters() if k.startswith(("conv_stem", "blocks.0")))
