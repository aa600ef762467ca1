"""What to fit, by look and by loss: a painting fitted as the predictor's 100-d vector (``--fit
vector``, 5 minutes) beside its ``benchmarks/style_fit.py`` fit of the norms, on the two held-out
photos at 1024 px with ``--method fast``, measured as style_fit.py measures.

    python benchmarks/style_fit_vector.py munch

Writes benchmarks/results/style_fit_KEY_vector.json and benchmarks/images/style_fit_KEY_norms_vs_vector*.jpg.
"""
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import IMAGES, machine, write_json  # noqa: E402
from style_fit import HELD_OUT, PAINTINGS, Measures, gallery  # noqa: E402


def main() -> None:
    import hires
    key = sys.argv[1]
    vec = IMAGES / f"style_fit_{key}_vector.hstyle"
    norms = IMAGES / f"style_fit_{key}.hstyle"
    if not vec.exists():
        subprocess.run([sys.executable, "-m", "hires.commands.cli", "style", "fit", str(PAINTINGS[key]), "-o", str(vec),
                        "--fit", "vector", "--quiet"], check=True)
    out, rows = {"machine": machine(), "painting": key, "photos": {}}, []
    for pname, photo in HELD_OUT.items():
        m = Measures(PAINTINGS[key], 1024)
        w, h = hires.core.io.image_size(photo)
        size = f"1024x{round(1024 * h / w)}"
        imgs = {n: hires.render(photo, str(p), size=size, method="fast").image for n, p in (("norms", norms), ("vector", vec))}
        out["photos"][pname] = {n: m(i) for n, i in imgs.items()}
        rows.append([imgs["norms"], imgs["vector"]])
    out["files"] = {n: hires.fast.hstyle.load(p).info["heldout"] for n, p in (("norms", norms), ("vector", vec))}
    print(json.dumps(out, indent=1))
    write_json(f"style_fit_{key}_vector.json", out)
    gallery(rows, IMAGES / f"style_fit_{key}_norms_vs_vector.jpg", 400)
    gallery(rows, IMAGES / f"style_fit_{key}_norms_vs_vector_crops.jpg", None, crop=400)


if __name__ == "__main__":
    main()
