"""A style fit as a job: its work folder and saved state, the time budget, the held-out figures and
the ``.hstyle`` file written at the end (the pieces are hires.fit.stylefit's, the file hires.fast.hstyle's).

hires deletes only what it made: the fit's state lives in a work folder hires marks as its own
(hires.engine.workfolder.WorkFolder, the renders' kind), removed when the file is written.
"""
from __future__ import annotations

import io as _bytes_io
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from hires.fast import hstyle
from hires.engine.workfolder import FIT_STATE, WorkFolder
from hires.core.config import parse_memory
from hires.core.errors import BudgetError
from hires.core.progress import Note, Step, ignore
from hires.fit.fitoptions import FitOptions
from hires.core.safefiles import file_sha256, load_npz
from hires.fit.stylefit import CHECKPOINT_S, Fit, check_output, embed, fit_key, load_inputs


@dataclass(frozen=True)
class FitRequest:
    paintings: list                 # paths, 'path:weight' specs
    output: Path
    photos: object = None           # a folder, or None for the bundled photos
    options: FitOptions = FitOptions()
    memory: str = "2GiB"
    overwrite: bool = False
    fresh: bool = False             # forget a saved state of this fit


@dataclass(frozen=True)
class FitResult:
    path: Path
    steps: int
    seconds: float
    guess: dict            # held-out losses of the predictor's guess
    fitted: dict           # and of the fit
    resumed_at: int        # the step a saved state put the fit at (0: from the start)

    @property
    def ratio(self) -> float:
        """Held-out style loss of the fit over the guess's (below 1: the fit is closer to the painting)."""
        return self.fitted["style"] / max(self.guess["style"], 1e-12)


def fit_style(req: FitRequest, progress=ignore) -> FitResult:
    """Fit, resumably, and write ``req.output``; every input checked before any work."""
    options = req.options.check()
    budget = parse_memory(req.memory)
    if options.peak_bytes() > budget:
        raise BudgetError(f"--memory: a fit with {options.crop} px crops needs about "
                          f"{options.peak_bytes() / 2**30:.2f} GiB; raise --memory or lower --crop")
    output = check_output(req.output, req.overwrite)
    inputs = load_inputs(req.paintings, req.photos, budget)
    key = fit_key(inputs, options)
    # beside the output, named with its suffix: not the folder of a render to an image of the same stem
    work = WorkFolder.open(output.parent / f".{output.name}.hires-work")
    work.lock()
    done = False
    try:
        fit = Fit(inputs, options)
        resumed = 0 if req.fresh else _resume(fit, work, key, progress)
        progress(Note(f"fitting the network's {options.fitted} to {len(inputs.paintings)} painting(s) on "
                      f"{len(inputs.photos)} photo(s), {len(inputs.held_out)} held out"
                      + (f"; resumed at step {resumed}" if resumed else "")))
        _run(fit, work, key, progress)
        guess, fitted = fit.evaluate(fit.guess), fit.evaluate(fit.params.as_arrays())
        style = hstyle.FittedStyle(fit.params.as_arrays(), _paintings(inputs), {
            "fitted": options.fitted,
            "fit": {**asdict(options), "steps": fit.step_index, "seconds": round(fit.elapsed, 1),
                    "photos": len(inputs.photos), "held_out": len(inputs.held_out)},
            "heldout": {"style_guess": guess["style"], "style_fit": fitted["style"],
                        "content_guess": guess["content"], "content_fit": fitted["content"]}})
        hstyle.save(style, output, req.overwrite)
        done = True
        return FitResult(output, fit.step_index, fit.elapsed, guess, fitted, resumed)
    finally:
        work.unlock()
        if done or not work.dir.is_regular(FIT_STATE):
            work.remove()
        else:
            work.close()


def _paintings(inputs) -> tuple[hstyle.Painting, ...]:
    # (the name as the file reader takes it: printable, at most hstyle.MAX_TEXT characters)
    return tuple(hstyle.Painting(hstyle.printable(p.name)[:hstyle.MAX_TEXT], file_sha256(p), w, embed(p))
                 for p, w in inputs.paintings)


def _budget_left(fit: Fit) -> bool:
    o = fit.options
    return fit.step_index < o.max_steps if o.max_steps is not None else fit.elapsed < o.minutes * 60


def _run(fit: Fit, work: WorkFolder, key: str, progress) -> None:
    """Steps until the budget is spent, the state saved every CHECKPOINT_S and when interrupted."""
    o = fit.options
    saved_at = time.perf_counter()
    try:
        while _budget_left(fit):
            t = time.perf_counter()
            loss = fit.step()
            fit.elapsed += time.perf_counter() - t
            per_step = fit.elapsed / max(fit.step_index, 1)
            total = o.max_steps if o.max_steps is not None else max(fit.step_index, round(o.minutes * 60 / per_step))
            done, whole = (fit.step_index, total) if o.max_steps is not None else (fit.elapsed, o.minutes * 60)
            progress(Step(0, 1, 1, 1, fit.step_index, total, loss, min(done, whole), whole))
            if time.perf_counter() - saved_at > CHECKPOINT_S:
                _save(fit, work, key)
                saved_at = time.perf_counter()
    except BaseException:  # Ctrl-C (or a failure): what was done so far is kept for the next run
        if fit.step_index:
            _save(fit, work, key)
        raise


def _save(fit: Fit, work: WorkFolder, key: str) -> None:
    buf = _bytes_io.BytesIO()
    np.savez(buf, **fit.state(key))
    with work.dir.replacing(FIT_STATE) as fh:
        fh.write(buf.getvalue())


def _resume(fit: Fit, work: WorkFolder, key: str, progress) -> int:
    """The step a saved state of this fit puts ``fit`` at (0 when there is none or it is not usable)."""
    if not work.dir.is_regular(FIT_STATE):
        return 0
    try:
        with load_npz(_bytes_io.BytesIO(work.dir.read(FIT_STATE, 1 << 20)), 1 << 20) as z:
            saved = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        saved = {}
    if fit.restore(saved, key):
        return fit.step_index
    progress(Note("the work folder's fit state is not this fit's (other inputs or options, or damaged): "
                  "starting afresh"))
    return 0
