"""The weighted loss functions with hand-written backward passes, against float64 references."""
import numpy as np
import pytest
import torch

from hires.engine import losses


def _inputs(n=37, c=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    f = torch.rand(n, c, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.rand(n, 1, generator=g, dtype=torch.float64)
    w[::4] = 0.0  # context positions own nothing
    return f, w


def _tile_weights(h=30, w=32, seed=1):
    """A tile's weights: zero in its context, ramps, one over its core (as tiles.ownership makes)."""
    g = torch.Generator().manual_seed(seed)
    m = torch.zeros(h, w, dtype=torch.float64)
    m[1:h - 1, 1:w - 1] = torch.rand(h - 2, w - 2, generator=g, dtype=torch.float64)  # the ramps
    m[2:h - 2, 2:w - 2] = 1.0                                                           # the core
    return m.reshape(-1, 1)


@pytest.mark.parametrize("weights", ["random", "tile", "all ones", "no ones"])
def test_weighted_gram_value_and_gradient(weights):
    f, w = _inputs(n=30 * 32, c=3)
    w = {"random": w, "tile": _tile_weights(), "all ones": torch.ones_like(w),
         "no ones": w * 0.9}[weights]
    rows = losses.OwnedRows.of(w.numpy(), dtype=torch.float64)
    if weights == "tile":  # the core's run is read in place, only the band is weighted
        assert rows.block[1] - rows.block[0] > len(rows.index)
    if weights in ("random", "no ones"):  # mostly band: one weighted copy instead
        assert rows.block is None and len(rows.extra) == len(w)
    ref = np.einsum("p,pi,pj->ij", w.numpy()[:, 0], f.detach().numpy(), f.detach().numpy())
    np.testing.assert_allclose(losses.weighted_gram(f, rows).detach().numpy(), ref, rtol=1e-12)
    # an asymmetric upstream gradient exercises the symmetrisation in the backward
    a = torch.rand(3, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: (losses.weighted_gram(x, rows) * a).sum(), (f,))


def test_weighted_squared_error_value_and_gradient():
    f, w = _inputs()
    t = torch.rand(f.shape, dtype=torch.float64)
    ref = (w.numpy() * (f.detach().numpy() - t.numpy()) ** 2).sum()
    assert np.isclose(losses.weighted_squared_error(f, t, w.sqrt()).item(), ref, rtol=1e-12)
    assert torch.autograd.gradcheck(lambda x: losses.weighted_squared_error(x, t, w.sqrt()) * 3.0, (f,))


def test_flat_is_a_view_of_channels_last_activations():
    a = torch.rand(1, 8, 6, 5).contiguous(memory_format=torch.channels_last)
    v = losses.flat(a)
    assert v.shape == (30, 8) and v.data_ptr() == a.data_ptr()
    np.testing.assert_array_equal(v.numpy(), a[0].permute(1, 2, 0).reshape(30, 8).numpy())


@pytest.mark.parametrize("weights", ["tile", "all ones"])
@pytest.mark.parametrize("mode", ["reflect", "zeros", "circular"])
def test_banded_first_layer_gram_value_and_gradient(mode, weights, monkeypatch):
    """relu1_1's weighted Gram and mean sums made band by band (hires.engine.bandgram) equal those of the
    whole activation of the convolution padded the frame's way, and so do their gradients."""
    import torch.nn.functional as F

    from hires.engine import bandgram
    monkeypatch.setattr(bandgram, "BAND_POSITIONS", 48)  # 3-row bands, the last one shorter
    h, w = 14, 16
    g = torch.Generator().manual_seed(2)
    x = torch.rand(1, 3, h, w, generator=g, dtype=torch.float64, requires_grad=True)
    kernel = torch.randn(8, 3, 3, 3, generator=g, dtype=torch.float64)
    bias = torch.randn(8, generator=g, dtype=torch.float64) * 0.1
    wts = _tile_weights(h, w) if weights == "tile" else torch.ones(h * w, 1, dtype=torch.float64)
    bands = bandgram.Bands.of(wts, h, w, mean=True)
    assert len(bands.rows) == 5 and bands.rows[-1] == (12, 14)
    assert (weights == "all ones") == all(w is None for entries in bands.weights for _, w in entries)

    def banded(x):
        return bandgram.conv_relu_gram(bandgram.pad(x, mode), kernel, bias, bands)

    padded = F.pad(x, (1, 1, 1, 1), mode="constant" if mode == "zeros" else mode)
    f = torch.relu(F.conv2d(padded, kernel, bias)).detach()[0].permute(1, 2, 0).reshape(-1, 8).numpy()
    gram, mean = banded(x)
    np.testing.assert_allclose(gram.detach().numpy(), np.einsum("p,pi,pj->ij", wts.numpy()[:, 0], f, f), rtol=1e-12)
    np.testing.assert_allclose(mean.detach().numpy(), wts.numpy()[:, 0] @ f, rtol=1e-12)
    a, u = torch.rand(8, 8, generator=g, dtype=torch.float64), torch.rand(8, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: ((lambda gm: (gm[0] * a).sum() + gm[1] @ u)(banded(x))), (x,))


def test_banded_gram_of_several_weight_sets_is_each_sets_gram(monkeypatch):
    """Style regions: one band pass makes a Gram and mean per weight set (a region with no weight in
    a band skips it), each equal to the whole activation's weighted by that set; so do gradients."""
    import torch.nn.functional as F

    from hires.engine import bandgram
    monkeypatch.setattr(bandgram, "BAND_POSITIONS", 48)
    h, w = 14, 16
    g = torch.Generator().manual_seed(4)
    x = torch.rand(1, 3, h, w, generator=g, dtype=torch.float64, requires_grad=True)
    kernel = torch.randn(8, 3, 3, 3, generator=g, dtype=torch.float64)
    top = torch.zeros(h, w, dtype=torch.float64)
    top[:5] = 1.0
    top[5] = 0.25                                       # a soft edge
    sets = [top.reshape(-1, 1), (1 - top).reshape(-1, 1) * _tile_weights(h, w)]
    bands = bandgram.Bands.of(sets, h, w, mean=True)
    assert bands.stacked and [k for k, _ in bands.weights[-1]] == [1]  # the last band: the second set only
    f = torch.relu(F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), kernel)).detach()[0].permute(1, 2, 0).reshape(-1, 8)
    gram, mean = bandgram.conv_relu_gram(bandgram.pad(x, "reflect"), kernel, None, bands)
    for i, wts in enumerate(sets):
        np.testing.assert_allclose(gram[i].detach().numpy(), ((f * wts).T @ f).numpy(), rtol=1e-12)
        np.testing.assert_allclose(mean[i].detach().numpy(), (wts.T @ f)[0].numpy(), rtol=1e-12)
    a = torch.rand(2, 8, 8, generator=g, dtype=torch.float64)
    u = torch.rand(2, 8, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: (lambda gm: (gm[0] * a).sum() + (gm[1] * u).sum())(
        bandgram.conv_relu_gram(bandgram.pad(x, "reflect"), kernel, None, bands)), (x,))


def test_adam_takes_torchs_steps_to_the_bit():
    """hires.engine.adam.Adam against torch.optim.Adam on the same loss, 40 steps, in both layouts."""
    from hires.engine.adam import Adam
    g = torch.Generator().manual_seed(5)
    start, target = torch.rand(1, 3, 9, 11, generator=g), torch.rand(1, 3, 9, 11, generator=g)
    for layout in (torch.contiguous_format, torch.channels_last):
        ours = start.clone().contiguous(memory_format=layout).requires_grad_(True)
        theirs = start.clone().contiguous(memory_format=layout).requires_grad_(True)
        mine, reference = Adam(ours, lr=0.02), torch.optim.Adam([theirs], lr=0.02)
        for _ in range(40):
            for x, opt in ((ours, mine), (theirs, reference)):
                opt.zero_grad()
                (((x - target) ** 4).sum() + (x * x.roll(1, -1)).sum()).backward()
                opt.step()
        assert torch.equal(ours, theirs) and not torch.equal(ours, start)


def test_a_render_process_does_not_import_the_compiler(tmp_path, content_path, style_path):
    """torch.optim's optimisers import torch._dynamo (2 s a process): an Adam render does not."""
    import subprocess
    import sys
    script = ("import sys, hires; hires.render(sys.argv[1], sys.argv[2], size='64x48', base_size=64, iterations=(2,), "
              "optimizer='adam', style_layers=('relu1_1',), content_layer='relu1_1', network='random'); "
              "print('torch._dynamo' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", script, str(content_path), str(style_path)], capture_output=True,
                       text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"
