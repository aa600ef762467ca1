"""Does a style fitted at 512 px hold at print scale?  The fast method's multi-scale start paints a
print at 1024 px, then again at each doubling; the fit saw 256 px crops of 512 px photos.  For each
fitted style of a ``benchmarks/style_fit.py`` run, the forest photo (never fitted on) is rendered with
``--method fast`` at SIZE with the painting (the predictor's guess) and with the fitted style, and
each is measured against the painting as benchmarks/style_fit.py measures (hybrid and random-VGG
style loss, colour distance), the painting at its own size (never upsampled).

    python benchmarks/style_fit_print.py                    # 3000 px, the files of `style_fit`
    python benchmarks/style_fit_print.py --size 2048 --run style_fit_quick

Writes benchmarks/results/RUN_print.json and benchmarks/images/RUN_print_crops.jpg (100% crops:
guess, fitted per painting).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import IMAGES, machine, write_json  # noqa: E402
from style_fit import HELD_OUT, PAINTINGS, Measures, gallery  # noqa: E402


def main() -> None:
    import hires
    from hires.core import io
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=3000)
    ap.add_argument("--run", default="style_fit")
    a = ap.parse_args()
    photo = HELD_OUT["forest"]
    w, h = io.image_size(photo)
    size = f"{a.size}x{round(a.size * h / w)}"
    out, crops = {"machine": machine(), "size": size, "paintings": {}}, []
    for key, painting in PAINTINGS.items():
        fitted = IMAGES / f"{a.run}_{key}.hstyle"
        if not fitted.exists():
            continue
        measures = Measures(painting, a.size)
        images = {name: hires.render(photo, str(style), size=size, method="fast").image
                  for name, style in (("guess", painting), ("fitted", fitted))}
        out["paintings"][key] = {name: measures(img) for name, img in images.items()}
        print(key, json.dumps(out["paintings"][key]), flush=True)
        crops.append([images["guess"], images["fitted"]])
    write_json(f"{a.run}_print.json", out)
    gallery(crops, IMAGES / f"{a.run}_print_crops.jpg", None, crop=512)


if __name__ == "__main__":
    main()
