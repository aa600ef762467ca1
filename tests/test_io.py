"""Reading and writing images through pyvips."""
import os
import subprocess
import sys

import numpy as np
import pytest
import pyvips

from helpers import peak_growth
from hires.core import io, output
from hires.core.errors import InputError, OptionError, OutputError


def gradient(h=40, w=60):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x / (w - 1), y / (h - 1), 0.5 + 0.4 * np.sin(x / 5.0)], -1).astype(np.float32)


def vips8(a):
    return pyvips.Image.new_from_array((a * 255 + 0.5).astype(np.uint8), interpretation="srgb")


@pytest.mark.parametrize("ext", [".png", ".jpg", ".tif", ".webp"])
def test_reads_common_formats(tmp_path, ext):
    a = gradient()
    p = tmp_path / f"g{ext}"
    vips8(a).write_to_file(str(p), **({"Q": 98} if ext in (".jpg", ".webp") else {}))
    b = io.load_image(p)
    assert b.shape == a.shape and b.dtype == np.float32
    assert np.abs(b - a).mean() < 0.02


def test_reads_16_bit_with_full_precision(tmp_path):
    a = gradient()
    p = tmp_path / "g16.png"
    pyvips.Image.new_from_array((a * 65535 + 0.5).astype(np.uint16), interpretation="rgb16").pngsave(str(p))
    b = io.load_image(p)
    assert np.abs(b - a).max() < 1e-4  # 8-bit would be off by up to 2e-3


def test_grey_becomes_rgb(tmp_path):
    p = tmp_path / "grey.png"
    pyvips.Image.new_from_array((gradient()[..., 0] * 255).astype(np.uint8), interpretation="b-w").pngsave(str(p))
    b = io.load_image(p)
    assert b.shape[2] == 3 and np.allclose(b[..., 0], b[..., 1]) and b.std() > 0.1


def test_alpha_is_flattened_onto_white(tmp_path):
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, 5:, 3] = 255  # left half transparent, right half opaque red
    p = tmp_path / "a.png"
    pyvips.Image.new_from_array(rgba, interpretation="srgb").pngsave(str(p))
    b = io.load_image(p)
    np.testing.assert_allclose(b[:, :5], 1.0, atol=1e-6)
    np.testing.assert_allclose(b[:, 5:], np.broadcast_to([1.0, 0.0, 0.0], (10, 5, 3)), atol=1e-6)


def test_cmyk_with_profile_is_converted_to_srgb(tmp_path):
    a = gradient()
    p = tmp_path / "cmyk.jpg"
    vips8(a).icc_export(output_profile="cmyk").jpegsave(str(p), Q=98)
    assert pyvips.Image.new_from_file(str(p)).bands == 4
    b = io.load_image(p)
    assert b.shape == a.shape
    assert np.abs(b - a).mean() < 0.08  # CMYK gamut round trip


def test_exif_orientation_is_applied(tmp_path):
    a = gradient(20, 50)
    p = tmp_path / "rot.jpg"
    im = vips8(a).copy()
    im.set_type(pyvips.GValue.gint_type, "orientation", 6)  # display rotated 90 degrees clockwise
    im.jpegsave(str(p), Q=98)
    assert io.image_size(p) == (20, 50)
    b = io.load_image(p)
    assert b.shape == (50, 20, 3)
    np.testing.assert_allclose(b, np.rot90(a, -1), atol=0.03)


def test_resize_keeps_aspect_or_covers(content_path):
    assert io.load_image(content_path, long_side=100).shape == (67, 100, 3)
    assert io.load_image(content_path, size=(64, 64)).shape == (64, 64, 3)
    assert io.load_image(content_path, size=(1000, 700)).shape == (700, 1000, 3)


def test_shrink_on_load_does_not_decode_full_size(tmp_path):
    """A 9000x9000 JPEG read at 256 px stays far below the 243 MB a full decode would take."""
    p = tmp_path / "big.jpg"
    (pyvips.Image.xyz(9000, 9000)[0] % 256).cast("uchar").bandjoin([128, 64]).copy(
        interpretation="srgb").jpegsave(str(p), Q=70)
    code = ("import resource, hires.core.io as io; base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
            f"a = io.load_image(r'{p}', long_side=256); assert a.shape == (256, 256, 3);"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    grown_kib = int(r.stdout.strip())
    assert grown_kib < 100 * 1024


@pytest.mark.parametrize("ext,depth", [(".tif", 8), (".tif", 16), (".png", 8), (".png", 16)])
def test_written_files_have_depth_dpi_and_icc(tmp_path, ext, depth):
    a = gradient()
    out = output.save_image(a, tmp_path / f"o{ext}", bit_depth=depth, dpi=240)
    r = pyvips.Image.new_from_file(str(out))
    assert r.format == ("ushort" if depth == 16 else "uchar")
    assert (r.width, r.height, r.bands) == (60, 40, 3)
    assert r.xres * 25.4 == pytest.approx(240, rel=1e-3)
    assert r.get_typeof("icc-profile-data") != 0 and len(r.get("icc-profile-data")) > 100
    back = io.load_image(out)
    assert np.abs(back - a).max() <= (0.5 / 255 + 1e-6 if depth == 8 else 1e-4)


def test_jpeg_quality_and_dpi(tmp_path):
    a = gradient(200, 200) + np.random.default_rng(0).random((200, 200, 3)).astype(np.float32) * 0.2
    lo = output.save_image(np.clip(a, 0, 1), tmp_path / "lo.jpg", quality=30, dpi=72)
    hi = output.save_image(np.clip(a, 0, 1), tmp_path / "hi.jpg", quality=95, dpi=72)
    assert lo.stat().st_size < hi.stat().st_size
    r = pyvips.Image.new_from_file(str(hi))
    assert r.get_typeof("icc-profile-data") != 0 and r.xres * 25.4 == pytest.approx(72, rel=1e-2)


def test_16_bit_jpeg_is_refused(tmp_path):
    with pytest.raises(OptionError):
        output.save_image(gradient(), tmp_path / "x.jpg", bit_depth=16)


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    out = tmp_path / "o.png"
    out.write_bytes(b"previous render")

    def broken(self, path, **kw):
        with open(path, "wb") as fh:
            fh.write(b"half a png")
        raise pyvips.Error("disk full")

    monkeypatch.setattr(pyvips.Image, "pngsave", broken)
    with pytest.raises(OutputError):
        output.save_image(gradient(), out)
    assert out.read_bytes() == b"previous render"
    assert sorted(os.listdir(tmp_path)) == ["o.png"]


def test_bad_inputs_raise_clear_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        io.load_image(tmp_path / "missing.png")
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(InputError, match="not a JPEG, PNG, TIFF, WebP image"):
        io.load_image(tmp_path / "text.jpg")
    with pytest.raises(InputError, match="folder"):
        io.load_image(tmp_path)
    good = tmp_path / "good.jpg"
    vips8(gradient(300, 300)).jpegsave(str(good))
    (tmp_path / "trunc.jpg").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InputError, match="corrupt"):
        io.load_image(tmp_path / "trunc.jpg")
    with pytest.raises(OutputError, match="does not exist"):
        output.check_output_path(tmp_path / "nope" / "o.png")
    with pytest.raises(OutputError, match="extension"):
        output.check_output_path(tmp_path / "o.bmpx")


def test_wrapped_resize_keeps_a_periodic_image_periodic(rng):
    """A seamless texture's levels are upsampled as the periodic image they are: the result equals
    the middle of the upsampled 3x3 repeat, so no seam appears where the texture wraps."""
    a = rng.random((48, 64, 3)).astype(np.float32)
    big = io.resize(np.ascontiguousarray(np.tile(a, (3, 3, 1))), 3 * 128, 3 * 96)
    middle = big[96:192, 128:256]
    np.testing.assert_allclose(io.resize(a, 128, 96, wrap=True), middle, atol=1e-5)
    assert np.abs(io.resize(a, 128, 96)[0] - middle[0]).max() > 0.05  # edge-extended rows differ


def _disk_canvas(path, side):
    """A float32 side x side x 3 memmap filled with a pattern, its pages handed back."""
    from hires.core.canvas import release
    a = np.memmap(path, np.float32, mode="w+", shape=(side, side, 3))
    for y in range(0, side, 256):
        a[y:y + 256] = (np.arange(side, dtype=np.float32)[None, :, None] % 97) / 97
        release(a)
    return a


@pytest.mark.parametrize("what", ["write", "resize"])
def test_a_disk_backed_canvas_is_read_without_becoming_resident(tmp_path, what):
    """Writing a disk-backed canvas (or resampling from one) keeps only a window of it in memory:
    a 16384 px texture's 3.2 GB canvas was all resident while its TIFF was written."""
    side = 4096
    canvas = _disk_canvas(tmp_path / "canvas.f32", side)
    if what == "write":
        growth = peak_growth(lambda: output.save_image(canvas, tmp_path / "out.tif"))
        back = io.load_image(tmp_path / "out.tif")
        np.testing.assert_allclose(back, np.asarray(canvas), atol=0.5 / 255 + 1e-6)
        assert growth < canvas.nbytes / 2, f"{growth / 2**20:.0f} MiB of a {canvas.nbytes / 2**20:.0f} MiB canvas"
    else:  # the next level's start, from disk to disk: strips of the output, and of the canvas what they need
        out = np.memmap(tmp_path / "out.f32", np.float32, mode="w+", shape=(2 * side, 2 * side, 3))
        growth = peak_growth(lambda: io.resize(canvas, 2 * side, 2 * side, out=out))
        np.testing.assert_array_equal(out[:512], io.resize(np.asarray(canvas[:300]), 2 * side, 600)[:512])
        assert growth < canvas.nbytes, f"{growth / 2**20:.0f} MiB for a {canvas.nbytes / 2**20:.0f} MiB canvas"
