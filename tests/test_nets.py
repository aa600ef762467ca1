"""Feature networks: the real torchvision-format loader on a generated file, lookup, fetch."""
import hashlib
import http.server
import pickle
import threading
from pathlib import Path

import pytest
import torch

from hires.engine import nets
from hires.core.safefiles import file_sha256
from hires.core.errors import WeightsError


def write_state_dict(folder: Path, seed: int = 3, name_hash: bool = True, drop: str | None = None) -> Path:
    """A VGG19 state dict in torchvision's key layout (features.N.*, classifier.*)."""
    g = torch.Generator().manual_seed(seed)
    ref = nets.VGG19Features()
    state = {}
    for i in nets.CONV_INDICES:
        conv = ref.features[i]
        state[f"features.{i}.weight"] = torch.randn(conv.weight.shape, generator=g) * 0.05
        state[f"features.{i}.bias"] = torch.randn(conv.bias.shape, generator=g) * 0.01
    state["classifier.0.weight"] = torch.zeros(4, 8)  # present in the real file, unused here
    if drop:
        del state[drop]
    tmp = folder / "tmp.pth"
    torch.save(state, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    final = folder / (f"vgg19-{digest[:8]}.pth" if name_hash else "weights.pth")
    tmp.rename(final)
    return final


def test_layer_table_matches_torchvision_indices():
    assert nets.LAYER_INDEX["relu1_1"] == 1 and nets.LAYER_INDEX["relu4_2"] == 22
    assert nets.LAYER_INDEX["relu5_1"] == 29 and nets.LAYER_STRIDE["relu3_1"] == 4
    assert nets.CONV_INDICES == [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]


def test_loads_torchvision_state_dict(tmp_path):
    path = write_state_dict(tmp_path)
    net = nets.load_vgg19(path)
    state = torch.load(path, weights_only=True)
    for i in nets.CONV_INDICES:
        assert torch.equal(net.features[i].weight, state[f"features.{i}.weight"])
    out = net(torch.rand(1, 3, 32, 32), ["relu1_1", "relu3_1"])
    assert out["relu1_1"].shape == (1, 64, 32, 32) and out["relu3_1"].shape == (1, 256, 8, 8)


def test_verification_rejects_wrong_or_truncated_files(tmp_path):
    """A file named as the official one that is not it fails verification; any other file is
    unverified (whatever prefix its name claims) and a truncated one cannot load."""
    path = write_state_dict(tmp_path)
    bad = tmp_path / "vgg19-dcbb9e9d.pth"  # claims the official hash
    bad.write_bytes(path.read_bytes())
    with pytest.raises(WeightsError, match="fails verification"):
        nets.load_vgg19(bad)
    assert nets.check_weights(path) == (file_sha256(path), False)  # its own hash in its name
    trunc = tmp_path / path.name.replace(".pth", "") / path.name
    trunc.parent.mkdir()
    trunc.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(WeightsError, match="not a plain state dict"):
        nets.load_vgg19(trunc)


def test_missing_layer_is_a_clear_error(tmp_path):
    path = write_state_dict(tmp_path, drop="features.21.weight")
    with pytest.raises(WeightsError, match="features.21.weight"):
        nets.load_vgg19(path)


def test_pickled_code_is_not_run(tmp_path):
    class Evil:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    p = tmp_path / "evil.pth"
    p.write_bytes(pickle.dumps({"features.0.weight": Evil()}))
    with pytest.raises(WeightsError):
        nets.load_vgg19(p, verify=False)
    assert not (tmp_path / "pwned").exists()


def test_lookup_order(tmp_path, monkeypatch):
    assert nets.find_weights().path is None
    hub = nets.hub_checkpoint_dir()
    hub.mkdir(parents=True)
    (hub / nets.WEIGHTS_NAME).write_bytes(b"x")
    assert nets.find_weights().source == "hub cache"
    env = tmp_path / "env.pth"
    env.write_bytes(b"x")
    monkeypatch.setenv("HIRES_WEIGHTS", str(env))
    assert nets.find_weights().path == env
    explicit = tmp_path / "explicit.pth"
    explicit.write_bytes(b"x")
    assert nets.find_weights(explicit).source == "--weights"
    with pytest.raises(WeightsError, match="does not exist"):
        nets.find_weights(tmp_path / "nope.pth")


def test_build_network_auto_falls_back_to_hybrid_and_vgg19_requires_weights(tmp_path, monkeypatch):
    net, name, message = nets.build_network("auto")
    assert name == "hybrid" and "hires weights fetch" in message
    with pytest.raises(WeightsError, match="hires weights fetch"):
        nets.build_network("vgg19")
    path = write_state_dict(tmp_path)
    monkeypatch.setenv("HIRES_WEIGHTS", str(path))
    net, name, _ = nets.build_network("auto")
    assert name == "vgg19"


def test_random_network_is_seeded():
    a, b, c = nets.random_network(1), nets.random_network(1), nets.random_network(2)
    assert torch.equal(a.features[0].weight, b.features[0].weight)
    assert not torch.equal(a.features[0].weight, c.features[0].weight)


class RangeHandler(http.server.BaseHTTPRequestHandler):
    payload = b""
    cut = None  # serve only this many bytes on the first full request (a dropped connection)
    requests = []

    def do_GET(self):
        rng = self.headers.get("Range")
        RangeHandler.requests.append(rng)
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        body = self.payload[start:]
        if not rng and RangeHandler.cut:
            body = body[: RangeHandler.cut]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(self.payload) - start))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture
def server(tmp_path):
    srv = http.server.HTTPServer(("127.0.0.1", 0), RangeHandler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_fetch_resumes_and_verifies(tmp_path, server):
    src = write_state_dict(tmp_path / ".." / tmp_path.name)
    RangeHandler.payload = src.read_bytes()
    RangeHandler.cut = len(RangeHandler.payload) // 3
    RangeHandler.requests = []
    url = f"http://127.0.0.1:{server.server_port}/{src.name}"
    dest = tmp_path / "dl"
    expected = file_sha256(src)[:8]  # (a test file: the official one's prefix cannot be made)
    with pytest.raises(WeightsError, match="resume"):
        nets.fetch_weights(dest, url, timeout=5, expected=expected)  # the connection drops after a third
    part = dest / (src.name + ".part")
    assert part.exists() and 0 < part.stat().st_size < len(RangeHandler.payload)
    seen = []
    path = nets.fetch_weights(dest, url, progress=lambda d, t: seen.append((d, t)), timeout=5, expected=expected)
    assert RangeHandler.requests[-1] == f"bytes={RangeHandler.cut}-"
    assert path.read_bytes() == RangeHandler.payload and not part.exists()
    assert seen[-1] == (len(RangeHandler.payload), len(RangeHandler.payload))
    nets.load_vgg19(path)


def test_fetch_deletes_a_download_that_fails_verification(tmp_path, server):
    RangeHandler.payload = b"not the weights" * 100
    RangeHandler.cut = None
    url = f"http://127.0.0.1:{server.server_port}/vgg19-dcbb9e9d.pth"
    with pytest.raises(WeightsError, match="fails verification"):
        nets.fetch_weights(tmp_path, url, timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_fetch_without_network_says_what_to_do(tmp_path):
    with pytest.raises(WeightsError, match="HIRES_WEIGHTS"):
        nets.fetch_weights(tmp_path, "http://127.0.0.1:9/vgg19-dcbb9e9d.pth", timeout=2)


def test_bf16_convolutions_keep_features_and_gradients_close_to_fp32():
    net = nets.random_network(0)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    layers = ["relu1_1", "relu2_1", "relu3_1"]

    def features_and_grad():
        xi = x.clone().requires_grad_(True)
        feats = net(xi, layers)
        sum((f ** 2).mean() for f in feats.values()).backward()
        return {k: v.detach() for k, v in feats.items()}, xi.grad

    ref, gref = features_and_grad()
    net.set_precision("bf16")
    assert net.compute_dtype == torch.bfloat16
    low, glow = features_and_grad()
    assert torch.equal(low["relu1_1"], ref["relu1_1"])  # the first convolution sees pixels: float32
    for name in layers:
        assert low[name].dtype == torch.float32  # statistics are taken in float32
        assert name == "relu1_1" or not torch.equal(low[name], ref[name])  # the others ran in bfloat16
        assert (low[name] - ref[name]).norm() / ref[name].norm() < 0.03
    cosine = torch.nn.functional.cosine_similarity(glow.flatten(), gref.flatten(), dim=0)
    assert cosine > 0.99
    net.set_precision("fp32")
    back, _ = features_and_grad()
    assert torch.equal(back["relu3_1"], ref["relu3_1"])


def test_precision_choice(tmp_path, monkeypatch):
    from hires.core import device
    from hires.core.errors import OptionError
    flags = tmp_path / "cpuinfo"
    # the flags as this CPU's whatever it is (an AVX2-only one restricts torch below AVX-512 by itself)
    monkeypatch.setattr(device, "isa_restricted", lambda: False)
    flags.write_text("flags\t: fpu sse avx2 avx512f avx512bw\n")
    assert not device.bf16_supported(str(flags))
    flags.write_text("flags\t: fpu sse avx2 avx512f avx512_bf16\n")
    assert device.bf16_supported(str(flags))
    monkeypatch.setattr(device, "isa_restricted", lambda: True)  # torch held to AVX2: emulated, so not
    assert not device.bf16_supported(str(flags))
    cpu = torch.device("cpu")
    monkeypatch.setattr(device, "bf16_supported", lambda: False)
    assert device.pick_precision("auto", cpu) == "fp32"
    with pytest.raises(OptionError, match="no native bfloat16"):
        device.pick_precision("bf16", cpu)
    monkeypatch.setattr(device, "bf16_supported", lambda: True)
    assert device.pick_precision("auto", cpu) == "bf16"
    assert device.pick_precision("auto", torch.device("cuda")) == "fp32"
    assert device.pick_precision("fp32", cpu) == "fp32"


def test_auto_precision_is_bf16_only_at_adam_levels(monkeypatch):
    from hires.core import device
    from hires.engine import engine
    from hires.core.config import Settings
    from hires.engine.pyramid import Level
    monkeypatch.setattr(device, "bf16_supported", lambda: True)
    coarse, fine = Level(0, 64, 64, 40, ("relu1_1",), "relu1_1"), Level(1, 128, 128, 10, ("relu1_1",), "relu1_1")
    auto = engine.Engine(Settings(network="random"))
    assert [auto.level_precision(lv) for lv in (coarse, fine)] == ["fp32", "bf16"]
    assert auto.use_level(fine) == "bf16" and auto.net.compute_dtype == torch.bfloat16
    assert auto.use_level(coarse) == "fp32" and auto.net.compute_dtype == torch.float32
    forced = engine.Engine(Settings(network="random", precision="bf16"))
    assert [forced.level_precision(lv) for lv in (coarse, fine)] == ["bf16", "bf16"]
    plain = engine.Engine(Settings(network="random", precision="fp32"))
    assert [plain.level_precision(lv) for lv in (coarse, fine)] == ["fp32", "fp32"]


def test_mobile_stride_two_steps_are_the_pretrained_convolution_then_the_binomial_blur():
    """Each anti-aliased stride-2 step of MobileNetV2 (run as one 5x5 convolution at stride 2) is the
    pretrained 3x3 convolution at stride 1, then a [1, 2, 1]^2 / 16 blur of each channel sampled
    every second pixel: against that in float64 (the merged kernel is stored in float32), everywhere
    but the frame's border row (padded differently)."""
    import torch.nn.functional as F

    from hires.engine.mobile import MobileFeatures
    net = MobileFeatures().double()
    net.set_padding("zeros")
    blur = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)
    blur = (blur.outer(blur) / 16)[None, None]
    convs = [net.stem] + [net.blocks[n]["depthwise"] for n, s in enumerate(net.strides) if s == 2]
    assert len(convs) == len(net.steps) == 4
    gen = torch.Generator().manual_seed(0)
    for conv, step in zip(convs, net.steps):
        x = torch.rand(1, conv.in_channels, 40, 36, generator=gen, dtype=torch.float64)
        c = conv.out_channels
        ref = F.conv2d(F.conv2d(x, conv.weight, conv.bias, padding=1, groups=conv.groups),
                       blur.expand(c, 1, 3, 3), stride=2, padding=1, groups=c)
        got = step(x)
        assert got.shape == ref.shape == (1, c, 20, 18)
        assert torch.allclose(got[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], rtol=1e-6, atol=1e-6)
        assert not torch.allclose(got, F.conv2d(x, conv.weight, conv.bias, stride=2, padding=1, groups=conv.groups))


@pytest.mark.parametrize("mode", ["reflect", "circular"])
def test_frame_padded_convolution_equals_torchs_padded_one_without_its_copy(mode):
    """FrameConv2d (zero-padded convolution plus the ring's bands) against nn.Conv2d's own
    reflect/circular padding, in float64: outputs and input gradients, for 3x3 and the blurred
    5x5 stride-2 steps, grouped and not, odd and even sides, channels-last and not.  The fast path
    must be the one taken (no reflection_pad2d copy of the layer)."""
    from torch import nn

    from hires.engine.borders import FrameConv2d
    g = torch.Generator().manual_seed(0)
    for (k, p), s, groups, (h, w) in [((3, 1), 1, 1, (13, 12)), ((3, 1), 1, 4, (16, 17)), ((3, 1), 2, 1, (14, 11)),
                                      ((5, 2), 2, 4, (13, 16)), ((5, 2), 2, 1, (16, 17)), ((5, 2), 1, 1, (12, 12)),
                                      ((9, 4), 1, 1, (20, 19))]:
        fast = FrameConv2d(4, 8, k, stride=s, padding=p, groups=groups, padding_mode=mode).double().requires_grad_(False)
        ref = nn.Conv2d(4, 8, k, stride=s, padding=p, groups=groups, padding_mode=mode).double().requires_grad_(False)
        ref.load_state_dict(fast.state_dict())
        for channels_last in (False, True):
            x = torch.randn(1, 4, h, w, dtype=torch.float64, generator=g)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            x.requires_grad_()
            y, y_ref = fast(x), ref(x)
            assert "FramePadded" in type(y.grad_fn).__name__
            weight = torch.randn(y.shape, dtype=torch.float64, generator=g)
            grad, = torch.autograd.grad((y * weight).sum(), x)
            grad_ref, = torch.autograd.grad((y_ref * weight).sum(), x)
            assert torch.allclose(y, y_ref, rtol=0, atol=1e-12)
            assert torch.allclose(grad, grad_ref, rtol=0, atol=1e-12)
