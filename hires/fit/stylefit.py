"""Fitting the feed-forward network to a painting: ``hires style fit``.

The bundled network renders any style from its conditional instance norms' scales and shifts, which
the predictor guesses from the painting in one look.  The fit starts from that guess and moves what
the style depends on (``norms``: every norm's gamma and beta, 694 numbers; or ``vector``: the
predictor's 100-d bottleneck they are made from) by Adam, so that the network's output on crops of
training photos has the painting's statistics under hires' own style loss (the hybrid network's
Gram matrices, the optimised method's layers and weights) while keeping the photo's content.  Held-
out photos, never trained on, measure the guess and the fit alike; the ``.hstyle`` file records both.

The fit runs for a time budget.  With a work folder beside the output it saves its state (the
fitted numbers, Adam's moments, the step) every CHECKPOINT_S seconds and on Ctrl-C, and a rerun
with the same inputs and options continues from there; the folder goes when the file is written.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from hires.core import io
from hires.engine import magenta
from hires.fast import hstyle
from hires.engine.adam import Adam
from hires.core.errors import InputError, OptionError
from hires.core.layers import DEFAULT_LAYERS
from hires.core.safefiles import file_sha256
from hires.fit.fitoptions import FitOptions

DATA = Path(__file__).parents[1] / "data"
DEFAULT_PHOTOS = [DATA / "chelsea.png", *sorted((DATA / "photos").glob("*.jpg"))]
MIN_PHOTOS = 2          # one to fit on, one held out
MAX_PHOTOS = 64
HOLD_OUT_EVERY = 4      # every 4th photo (by name) is held out, at least one
CHECKPOINT_S = 20.0


def gram(f: torch.Tensor) -> torch.Tensor:
    """E[F F^T] over the positions of a (1, C, h, w) map: hires' style statistic."""
    flat = f.reshape(f.shape[1], -1)
    return flat @ flat.T / flat.shape[1]


class Objective:
    """hires' optimised-method loss of a stylised image against the paintings' statistics and the
    photo's content: the mean over style layers of ||G - G_target||^2 / ||G_target||^2, and the
    content layer's mean squared feature error over the target's energy, weighted as Settings'."""

    def __init__(self, paintings: list[tuple[np.ndarray, float]], style_weight: float, content_weight: float,
                 network: str = "hybrid"):
        from hires.engine.nets import build_network
        self.net = build_network(network)[0]
        self.net.set_padding("reflect")
        self.layers, self.content_layer = DEFAULT_LAYERS[network]
        self.style_weight, self.content_weight = style_weight, content_weight
        total = sum(w for _, w in paintings)
        self.targets: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for img, w in paintings:
                feats = self.net(fast_tensor(img), [*self.layers, self.content_layer])
                for name, f in feats.items():
                    self.targets[name] = self.targets.get(name, 0) + gram(f.float()) * (w / total)
        self.norms = {n: float((t ** 2).sum()) for n, t in self.targets.items()}
        self.energy = float(torch.trace(self.targets[self.content_layer]))

    def __call__(self, y: torch.Tensor, photo: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(style loss, content loss) of the stylised ``y`` of ``photo``, both (1, 3, h, w)."""
        feats = self.net(y, [*self.layers, self.content_layer])
        style = sum(((gram(feats[n]) - self.targets[n]) ** 2).sum() / self.norms[n] for n in self.layers)
        with torch.no_grad():
            want = self.net(photo, [self.content_layer])[self.content_layer]
        got = feats[self.content_layer]
        content = ((got - want) ** 2).sum() / (got.shape[2] * got.shape[3] * self.energy)
        return style / len(self.layers), content

    def total(self, style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        return self.style_weight * style + self.content_weight * content


def fast_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]


class Parameters:
    """What the fit moves, as one flat tensor (for Adam), and the norms' (gamma, beta) it makes."""

    def __init__(self, fitted: str, start_code: torch.Tensor):
        self.fitted = fitted
        self.net = magenta.networks()[1]
        with torch.no_grad():
            start = self.net.style_params(start_code)
        self.shapes = [g.shape for g, _ in start]
        if fitted == "vector":
            self.theta = start_code.reshape(-1).clone()
        else:
            self.theta = torch.cat([t.reshape(-1) for pair in start for t in pair])
        self.theta.requires_grad_(True)

    def norms(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if self.fitted == "vector":
            return self.net.style_params(self.theta[None])
        out, at = [], 0
        for shape in self.shapes:
            c = shape[1]
            out.append((self.theta[at:at + c].view(shape), self.theta[at + c:at + 2 * c].view(shape)))
            at += 2 * c
        return out

    def stylise(self, x: torch.Tensor, norms=None) -> torch.Tensor:
        norms = norms if norms is not None else self.norms()
        return self.net.resume(self.net.begin(x), 0, len(norms), norms, [None] * len(norms))

    def as_arrays(self) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
        with torch.no_grad():
            return tuple((g.reshape(-1).numpy().astype(np.float32), b.reshape(-1).numpy().astype(np.float32))
                         for g, b in self.norms())


# ---------------------------------------------------------------- inputs

@dataclass(frozen=True)
class Inputs:
    paintings: list[tuple[Path, float]]
    photos: list[Path]          # to fit on
    held_out: list[Path]        # never fitted on: the file's held-out figures


def photo_files(folder) -> list[Path]:
    """The images of ``folder`` hires reads (by their first bytes; other files are passed over)."""
    if folder is None:
        return list(DEFAULT_PHOTOS)
    p = Path(folder)
    if not p.is_dir():
        raise InputError(f"--photos: {str(folder)!r} is not a folder; give a folder of photos")
    files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")
                   and io.loader_of(f) in io.LOADERS)
    if len(files) < MIN_PHOTOS:
        raise InputError(f"--photos: {str(folder)!r} holds {len(files)} image(s) hires reads ({io.FORMATS}); "
                         f"a fit needs at least {MIN_PHOTOS} (one is held out to measure it)")
    return files[:MAX_PHOTOS]


def split(files: list[Path]) -> tuple[list[Path], list[Path]]:
    """(fit on, held out): every HOLD_OUT_EVERY-th photo by name held out, the last one at least."""
    held = [f for k, f in enumerate(files) if k % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1] or [files[-1]]
    return [f for f in files if f not in held], held


def load_inputs(paintings, photos_folder, budget: int | None = None) -> Inputs:
    """The paintings (path, weight) and photos, each decoded once small (so a bad one is refused here)."""
    from hires.core.config import parse_style, check_weight
    if not paintings:
        raise OptionError("style fit: give at least one painting")
    if len(paintings) > hstyle.MAX_PAINTINGS:
        raise OptionError(f"style fit: at most {hstyle.MAX_PAINTINGS} paintings in one style")
    out = []
    for spec in paintings:
        path, weight = parse_style(str(spec))
        if hstyle.is_hstyle(path):
            raise InputError(f"painting: {path!r} is a fitted style; fit from the painting itself")
        io.check_decodes(path, "painting", budget)
        out.append((Path(path), check_weight(weight, spec, "painting")))
    files = photo_files(photos_folder)
    for f in files:
        io.check_decodes(f, "--photos", budget)
    fit_on, held = split(files)
    return Inputs(out, fit_on, held)


def fit_key(inputs: Inputs, options: FitOptions) -> str:
    """What a saved fit state belongs to: every input's bytes and every option (the budget aside)."""
    h = hashlib.sha256()
    for p in [*(p for p, _ in inputs.paintings), *inputs.photos, *inputs.held_out]:
        h.update(bytes.fromhex(file_sha256(p)))   # (streamed: a photo is never read whole)
    opts = {k: v for k, v in asdict(options).items() if k not in ("minutes", "max_steps")}
    h.update(json.dumps([[w for _, w in inputs.paintings], opts], sort_keys=True).encode())
    return h.hexdigest()[:24]


def check_output(path, overwrite: bool) -> Path:
    """``-o`` for a fitted style: a ``.hstyle`` name in a writable folder, not there unless ``overwrite``."""
    from hires.core.output import check_output_path
    return check_output_path(path, overwrite, (hstyle.SUFFIX,), f"starry{hstyle.SUFFIX}")


def embed(path: Path) -> bytes:
    """The painting as the file embeds it: sRGB JPEG, long side at most hstyle.EMBED_SIDE."""
    w, h = io.image_size(path, "painting")
    img = io.load_image(path, long_side=min(hstyle.EMBED_SIDE, max(w, h)), what="painting")
    im = (io.vips_from_array(img) * 255 + 0.5).cast("uchar").copy(interpretation="srgb")  # (cast clips)
    return im.jpegsave_buffer(Q=hstyle.EMBED_QUALITY, strip=True)


def multiple_of_4(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[0] // 4 * 4, img.shape[1] // 4 * 4
    return img[:h, :w]


class Fit:
    """One fit: the inputs loaded at the fit's size, the objective, what is fitted and Adam."""

    def __init__(self, inputs: Inputs, options: FitOptions):
        from hires.fast import stylecode
        self.inputs, self.options = inputs, options
        at = dict(long_side=options.size)
        images = [(io.load_image(p, what="painting", **at), w) for p, w in inputs.paintings]
        self.objective = Objective(images, options.style_weight, options.content_weight)
        self.photos = [multiple_of_4(io.load_image(p, what="--photos", **at)) for p in inputs.photos]
        self.held = [multiple_of_4(io.load_image(p, what="--photos", **at)) for p in inputs.held_out]
        guess = stylecode.style_bottleneck([(p, w) for p, w in inputs.paintings])  # the predictor's
        self.params = Parameters(options.fitted, guess)
        self.guess = self.params.as_arrays()
        self.adam = Adam(self.params.theta, options.lr)
        self.step_index, self.elapsed = 0, 0.0

    def crop(self, rng: np.random.Generator) -> torch.Tensor:
        img = self.photos[rng.integers(len(self.photos))]
        h, w = img.shape[:2]
        side = min(self.options.crop, h, w) // 4 * 4
        y, x = rng.integers(h - side + 1), rng.integers(w - side + 1)
        c = img[y:y + side, x:x + side]
        return fast_tensor(c[:, ::-1] if rng.random() < 0.5 else c)

    def step(self) -> float:
        """One Adam step over a batch of crops (each crop's gradient added, one at a time)."""
        rng = np.random.default_rng([self.options.seed, self.step_index])
        self.adam.zero_grad(set_to_none=True)
        total = 0.0
        for _ in range(self.options.batch):
            x = self.crop(rng)
            loss = self.objective.total(*self.objective(self.params.stylise(x), x)) / self.options.batch
            loss.backward()
            total += loss.detach().item()
        self.adam.step()
        self.step_index += 1
        return total

    def evaluate(self, norms) -> dict[str, float]:
        """Mean style and content loss over the held-out photos, whole, with ``norms``."""
        style = content = 0.0
        with torch.no_grad():
            tn = hstyle.as_torch(norms)
            for img in self.held:
                x = fast_tensor(img)
                s, c = self.objective(self.params.stylise(x, tn), x)
                style, content = style + float(s) / len(self.held), content + float(c) / len(self.held)
        return {"style": style, "content": content,
                "total": self.options.style_weight * style + self.options.content_weight * content}

    # ---- the saved state (hires' work folder; see the module docstring)

    def state(self, key: str) -> dict[str, np.ndarray]:
        return {"key": np.frombuffer(key.encode(), np.uint8), "theta": self.params.theta.detach().numpy().copy(),
                "exp_avg": self.adam.exp_avg.numpy().copy(), "exp_avg_sq": self.adam.exp_avg_sq.numpy().copy(),
                "counts": np.array([self.step_index, self.adam.steps], np.int64),
                "elapsed": np.array([self.elapsed], np.float64)}

    def restore(self, saved: dict[str, np.ndarray], key: str) -> bool:
        """Take ``saved`` when it is this fit's, whole and finite; False (nothing taken) otherwise."""
        n = self.params.theta.numel()
        try:
            ok = (bytes(saved["key"]).decode() == key
                  and all(saved[k].shape == (n,) and saved[k].dtype == np.float32 and np.isfinite(saved[k]).all()
                          for k in ("theta", "exp_avg", "exp_avg_sq"))
                  and saved["counts"].shape == (2,) and (saved["counts"] >= 0).all()
                  and saved["elapsed"].shape == (1,) and np.isfinite(saved["elapsed"]).all())
        except (KeyError, UnicodeDecodeError, AttributeError):
            ok = False
        if not ok:
            return False
        with torch.no_grad():
            self.params.theta.copy_(torch.from_numpy(saved["theta"]))
        self.adam.exp_avg.copy_(torch.from_numpy(saved["exp_avg"]))
        self.adam.exp_avg_sq.copy_(torch.from_numpy(saved["exp_avg_sq"]))
        self.step_index, self.adam.steps = (int(v) for v in saved["counts"])
        self.elapsed = max(0.0, float(saved["elapsed"][0]))
        return True
