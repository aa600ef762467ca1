"""A small gallery to look at: renders and textures at screen size, plus crops of big renders.

    python benchmarks/gallery.py [NAME ...]   # writes benchmarks/images/*.png
    python benchmarks/gallery.py compare      # the three ways to render, side by side
    python benchmarks/gallery.py builtin      # the 26 built-in styles on one photo, numbered
    python benchmarks/gallery.py print_crops  # the same full-resolution crops of three 6000x4500 renders
    python benchmarks/gallery.py print_compare  # the print before issue 23, the multi-scale start, the default
    python benchmarks/gallery.py print_speedups  # the default before and after the fine levels' speed-ups
    python benchmarks/gallery.py cpu_kinds    # the default print on AVX-512 beside AVX2, and their difference
    python benchmarks/gallery.py cpu_kinds print_6000x4500_amx_rerun print_6000x4500_avx2_xeon print_amx_vs_avx2_xeon
    python benchmarks/gallery.py textures     # three examples beside a 2x2 repeat of their seamless
                                              # 1024 px textures; one example at three --example-scale

``compare`` renders three content/style pairs at 1024 px three ways, with the demo schedule, the
fast start at 512 px (so that the 1024 px level is optimised on top of it) and three feature
networks: the random VGG19 with the fast start resampled (the default before issue 23), the hybrid
network with it, and the hybrid network with the multi-scale start (the default now); each pair
becomes one picture, the three side by side.  ``compare --reuse-random`` takes the first column
from the pictures already there (their third panel, the same settings before issue 23) instead of
rendering it again (15 minutes on 2 cores).

``textures --network NAME`` makes the texture sheets with that network (written with its name).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import IMAGES, RESULTS, SHARED, data, open_8bit, write_json  # noqa: E402

import hires  # noqa: E402
from hires.core import io, output  # noqa: E402
from hires.core.presets import load_preset  # noqa: E402

SETTINGS = load_preset("demo")

OUT = IMAGES


PAIRS = [("contents/chelsea.png", "styles/vangogh_starry_night_1889.jpg", "chelsea_starry"),
         ("contents/astronaut.png", "styles/hokusai_great_wave_c1831.jpg", "astronaut_hokusai"),
         ("contents/forest_path_2560x1600.jpg", "styles/monet_san_giorgio_maggiore_at_dusk_1908.jpg", "forest_monet")]
WAYS = {"random": dict(network="random", multiscale=False), "hybrid": dict(network="hybrid", multiscale=False),
        "hybrid_multiscale": dict(network="hybrid", multiscale=True)}


def _old_third_panel(name: str, size: tuple[int, int]) -> np.ndarray:
    """The third panel (fast start refined, random network) of a compare picture made before."""
    strip = io.load_image(OUT / f"compare_{name}.jpg")
    x0 = 2 * (size[0] + 16)
    return np.ascontiguousarray(strip[:, x0:x0 + size[0]])


def compare(reuse_random: bool = False) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    times = {}
    for content, style, name in PAIRS:
        c, s = data(content, "chelsea.png"), data(style, "vangogh_starry_night_1889.jpg")
        w, h = hires.core.io.image_size(c)
        size = (1024, round(1024 * h / w)) if w >= h else (round(1024 * w / h), 1024)
        row = []
        for way, kw in WAYS.items():
            if way == "random" and reuse_random:
                row.append(_old_third_panel(name, size))
                continue
            kw = dict(kw, init="fast", fast_size=512)
            t = time.perf_counter()
            single = RESULTS / "tmp" / f"compare_{name}_{way}.png"  # not kept: the strip below is
            single.parent.mkdir(parents=True, exist_ok=True)
            res = hires.render(c, s, single, size=size, settings=SETTINGS, overwrite=True, **kw)
            times[f"{name}/{way}"] = {"wall_s": round(time.perf_counter() - t, 1), "network": res.network}
            print(name, way, times[f"{name}/{way}"], flush=True)
            row.append(io.load_image(single))
        gap = np.ones((size[1], 16, 3), np.float32)
        strip = np.concatenate([row[0], gap, row[1], gap, row[2]], axis=1)
        # JPEG: three 1024 px paintings side by side are 6-9 MB as PNG
        output.save_image(np.ascontiguousarray(strip), OUT / f"compare_{name}.jpg", quality=90, overwrite=True)
    write_json("gallery_compare.json" if not reuse_random else "gallery_compare_hybrid.json", times)


def builtin() -> None:
    """A contact sheet of the 26-style network's styles (--builtin-style N) on the forest photo."""
    import pyvips
    OUT.mkdir(parents=True, exist_ok=True)
    photo = data("contents/forest_path_2560x1600.jpg", "chelsea.png")
    tiles = []
    t = time.perf_counter()
    for k in range(26):
        single = RESULTS / "tmp" / f"builtin_{k}.png"
        single.parent.mkdir(parents=True, exist_ok=True)
        hires.render(photo, None, single, size=(384, 240), method="fast", builtin_style=str(k), overwrite=True)
        label = pyvips.Image.text(f"<b>{k}</b>", dpi=110).gravity("centre", 384, 28, background=[0])
        tile = pyvips.Image.new_from_file(str(single)).extract_band(0, n=3)
        text = (label == 0).ifthenelse([255, 255, 255], [0, 0, 0])
        tiles.append(tile.join(text.cast("uchar").copy(interpretation="srgb"), "vertical"))
    sheet = pyvips.Image.arrayjoin(tiles, across=6, shim=8, background=[255, 255, 255])
    sheet.jpegsave(str(OUT / "builtin_styles.jpg"), Q=88)
    write_json("gallery_builtin.json", {"styles": 26, "size": "384x240", "wall_s": round(time.perf_counter() - t, 1)})


# full-resolution windows of the 6000x4500 forest renders: a corner of the finest level's tiles, the
# sunlit path, and tree trunks against the light
WINDOWS = [(560, 560), (1300, 3400), (3000, 700)]


def print_crops() -> None:
    """The same 512 px windows of three 6000x4500 renders of the forest with The Starry Night, side by
    side: the fast network alone (resampled from 1024 px), the default (fast start refined above 1024
    px: print_scale.py), and optimisation from the photo (print_scale.py --set 'init="content"'
    --name print_6000x4500_from_photo).  The two optimised renders must exist already."""
    import pyvips
    fast_tif = RESULTS / "tmp" / "print_fast_6000x4500.tif"
    fast_tif.parent.mkdir(parents=True, exist_ok=True)
    hires.render(data("contents/forest_path_2560x1600.jpg", "chelsea.png"),
                 data("styles/vangogh_starry_night_1889.jpg", "vangogh_starry_night_1889.jpg"), fast_tif,
                 size="6000x4500", method="fast", memory="1GiB", overwrite=True)
    sources = [fast_tif, RESULTS / "print_6000x4500.tif", RESULTS / "print_6000x4500_from_photo.tif"]
    images = [open_8bit(p) for p in sources]
    for i, (x, y) in enumerate(WINDOWS):
        row = [im.crop(x, y, 512, 512) for im in images]
        strip = pyvips.Image.arrayjoin(row, across=3, shim=16, background=[255, 255, 255])
        strip.jpegsave(str(OUT / f"print_crops_{i}_at_{x}x{y}.jpg"), Q=92)


# the 512 px windows of the print crops made before issue 23 (random VGG19, the fast start resampled
# from 1024 px), kept as print_6000x4500_random_vgg_crop*.png: the new prints are cut at the same ones
BEFORE = [(720, 720), (2160, 1440), (1728, 1728)]
PRINTS = [("random_vgg", None), ("multiscale_fast_only", "print_6000x4500_fast_multiscale.tif"),
          ("default", "print_6000x4500.tif")]


# the default print before the speed-ups of 2026-12-01's second stop (relu2_1 at the 1500 px level,
# MobileNetV2's stride-2 steps as two convolutions): the AVX2 4 GiB run of 14b55bf, kept under this name
SPEEDUPS = [("before", "print_6000x4500_before_speedups.tif"), ("default", "print_6000x4500.tif")]


def print_compare() -> None:
    """The same 512 px windows (BEFORE) of the 6000x4500 forest print with The Starry Night: before
    issue 23 (random VGG19), the multi-scale fast start alone (``print_scale.py --set
    'method="fast"' --name print_6000x4500_fast_multiscale``) and the default now (print_scale.py),
    side by side in print_compare_N_at_XxY.jpg."""
    _side_by_side(PRINTS, "print_compare")


def print_speedups() -> None:
    """The default print before the level and network speed-ups (SPEEDUPS) beside the default now,
    at the same windows: print_speedups_N_at_XxY.jpg."""
    _side_by_side(SPEEDUPS, "print_speedups")


def cpu_kinds(native: str = "print_6000x4500", restricted: str = "print_6000x4500_avx2",
              stem: str = "print_avx512_vs_avx2") -> None:
    """The default print on the machine's own instruction set beside the same print restricted to
    AVX2 (print_scale.py and its ``--name print_6000x4500_avx2`` run; other result names with
    ``cpu_kinds NATIVE RESTRICTED STEM``) at BEFORE's windows, STEM_N_at_XxY.jpg, and their
    difference over the whole print (printed, and written to STEM.json)."""
    pair = [("native", f"{native}.tif"), ("avx2", f"{restricted}.tif")]
    _side_by_side(pair, stem)
    a, b = (open_8bit(RESULTS / tif) for _, tif in pair)
    diff = (a.extract_band(0, n=3).cast("int") - b.extract_band(0, n=3).cast("int")).abs()  # in 1/255 steps
    mean = diff.avg()
    over = ((diff > 16).bandor() / 255).avg()  # the share of pixels with a channel more than 16/255 apart
    out = {"native": native, "restricted": restricted, "mean_abs_diff_of_255": round(float(mean), 2),
           "share_over_16_of_255": round(float(over), 4)}
    print(out)
    write_json(f"{stem}.json", out)


def _side_by_side(prints, stem: str) -> None:
    import pyvips
    for i, (cx, cy) in enumerate(BEFORE):
        row = []
        for name, tif in prints:
            if tif is None:
                row.append(pyvips.Image.new_from_file(str(OUT / f"print_6000x4500_random_vgg_crop{i}_at_{cx}x{cy}.png")))
                continue
            im = open_8bit(RESULTS / tif)
            row.append(im.crop(cx - 256, cy - 256, 512, 512))
        row = [r.extract_band(0, n=3) if r.bands > 3 else r for r in row]
        pyvips.Image.arrayjoin(row, across=len(row), shim=16, background=[255, 255, 255]).jpegsave(
            str(OUT / f"{stem}_{i}_at_{cx}x{cy}.jpg"), Q=92)


TEXTURES = ["textures/stone_bricks_ambientcg_bricks102.jpg", "textures/bark_ambientcg_bark014.jpg",
            "textures/mossy_rock_ambientcg_rock053.jpg"]
SCALES = [0.5, 1.0, 2.0]


def _seamless(example: Path, name: str, size: int, **kw):
    """A seamless texture of ``example`` with the default settings (as `hires texture --seamless`),
    written to results/tmp/NAME.png, and its wall time."""
    single = RESULTS / "tmp" / f"{name}.png"
    single.parent.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    hires.texture(example, single, size=(size, size), seamless=True, overwrite=True, **kw)
    return single, round(time.perf_counter() - t, 1)


def texture_sheet(example: Path, texture: Path, out: Path, example_scale: float = 1.0) -> None:
    """The example beside a 2x2 repeat of ``texture`` (a seam or a visible repeat shows in it), both
    at half size and the example at ``example_scale`` first, so features compare size for size."""
    import pyvips
    tex = pyvips.Image.new_from_file(str(texture))
    repeat = pyvips.Image.arrayjoin([tex] * 4, across=2).resize(0.5)
    ex = pyvips.Image.new_from_file(str(example)).resize(0.5 * example_scale)
    if ex.bands != repeat.bands:  # a gray example, a gray texture: the sheet is gray
        ex, repeat = ex.colourspace("b-w"), repeat.colourspace("b-w")
    ex.join(repeat, "horizontal", expand=True, shim=16, background=[255] * ex.bands, align="low").jpegsave(str(out), Q=88)


def textures(network: str | None = None, only: list[str] = ()) -> None:
    """For three examples: the example beside a 2x2 repeat of its seamless 1024 px texture
    (``texture_sheet``).  Then one example at three
    --example-scale values: how large its features come out in a 512 px texture.  With ``network``
    the three sheets only, named after it."""
    import pyvips
    OUT.mkdir(parents=True, exist_ok=True)
    times = {}
    kw = {"network": network} if network else {}
    tag = f"_{network}" if network else ""
    for rel in TEXTURES:
        example = SHARED / rel
        stem = example.stem.split("_")[0] + "_" + example.stem.split("_")[1]
        if only and not any(o in stem for o in only):
            continue
        single, times[f"{stem}_1024"] = _seamless(example, f"texture_{stem}_1024{tag}", 1024, **kw)
        texture_sheet(example, single, OUT / f"texture_{stem}_example_and_2x2{tag}.jpg")
        print(stem, times[f"{stem}_1024"], flush=True)
    if network:
        write_json(f"gallery_textures{tag}{'_' + '_'.join(only) if only else ''}.json", {"size": 1024, "network": network, "wall_s": times})
        return
    example = SHARED / TEXTURES[1]
    row = []
    for scale in SCALES:
        single, times[f"scale_{scale:g}"] = _seamless(example, f"texture_scale_{scale:g}", 512, example_scale=scale)
        row.append(pyvips.Image.new_from_file(str(single)))
        print("example_scale", scale, times[f"scale_{scale:g}"], flush=True)
    ex = pyvips.Image.new_from_file(str(example))
    pyvips.Image.arrayjoin([ex.resize(512 / ex.height), *row], shim=16, background=[255]).jpegsave(
        str(OUT / "texture_example_scale.jpg"), Q=90)
    write_json("gallery_textures.json", {"size": 1024, "scale_size": 512, "wall_s": times})


def main() -> None:
    if sys.argv[1:2] == ["textures"]:
        net = sys.argv[3] if sys.argv[2:3] == ["--network"] else None
        return textures(net, sys.argv[4:] if net else [])
    if sys.argv[1:2] == ["compare"]:
        return compare(reuse_random="--reuse-random" in sys.argv)
    if sys.argv[1:] == ["print_compare"]:
        return print_compare()
    if sys.argv[1:] == ["print_speedups"]:
        return print_speedups()
    if sys.argv[1:2] == ["cpu_kinds"]:
        if len(sys.argv) not in (2, 5):  # not on to the default gallery, which rewrites gallery.json
            sys.exit("usage: gallery.py cpu_kinds [NATIVE RESTRICTED STEM]")
        return cpu_kinds(*sys.argv[2:])
    if sys.argv[1:] == ["print_crops"]:
        return print_crops()
    if sys.argv[1:] == ["builtin"]:
        return builtin()
    OUT.mkdir(parents=True, exist_ok=True)
    times = {}
    jobs = [
        ("render_chelsea_starry_512x384", lambda o: hires.render(
            data("contents/chelsea.png", "chelsea.png"),
            data("styles/vangogh_starry_night_1889.jpg", "vangogh_starry_night_1889.jpg"), o, size="512x384", settings=SETTINGS, overwrite=True)),
        ("render_astronaut_hokusai_512x512", lambda o: hires.render(
            data("contents/astronaut.png", "chelsea.png"),
            data("styles/hokusai_great_wave_c1831.jpg", "vangogh_starry_night_1889.jpg"), o, size="512x512", settings=SETTINGS, overwrite=True)),
        ("texture_bricks_512x512", lambda o: hires.texture(
            data("textures/stone_bricks_ambientcg_bricks102.jpg", "stone_bricks_ambientcg_bricks102.jpg"), o,
            size="512x512", settings=SETTINGS, overwrite=True)),
        ("texture_bark_seamless_512x512", lambda o: hires.texture(
            data("textures/bark_ambientcg_bark014.jpg", "stone_bricks_ambientcg_bricks102.jpg"), o,
            size="512x512", seamless=True, settings=SETTINGS, overwrite=True)),
    ]
    only = set(sys.argv[1:])
    for name, job in jobs:
        if only and name not in only:
            continue
        t = time.perf_counter()
        res = job(OUT / f"{name}.png")
        times[name] = {"wall_s": round(time.perf_counter() - t, 1), "network": res.network}
        if "seamless" in name:  # 2x2 repeat shows whether the texture tiles with itself
            img = res.image
            output.save_image(np.ascontiguousarray(np.tile(img, (2, 2, 1))), OUT / f"{name}_2x2.png", overwrite=True)
        print(name, times[name], flush=True)
    write_json("gallery.json", times)


if __name__ == "__main__":
    main()
