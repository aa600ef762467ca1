"""The last step of every render: the colour options (luminance, the texture's example colours,
gray), then the output written atomically (``output.save_image`` through a temporary file); and the
``Result`` a render returns.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hires.core import colour, io, output
from hires.fast import fast
from hires.core.canvas import Buffers, release
from hires.engine.checkpoints import Checkpoints
from hires.core.config import Settings
from hires.core.progress import Writing, ignore
from hires.engine.regions import blend_kept
from hires.engine.reports import LevelReport
from hires.planning.planner import Plan
from hires.rendering.request import Job
from hires.rendering.jobplan import style_size

@dataclass(repr=False)
class Result:
    """What a render produced and what it cost."""
    image: np.ndarray | None     # float32 (H, W, 3) in [0, 1]; None when the canvas was disk-backed
    output: Path | None
    network: str
    plan: Plan                   # (fastrender.FastPlan for --method fast: the same as_dict keys that matter)
    levels: list[LevelReport]
    wall_s: float
    net_s: float
    net_gflop: float
    fast: fast.FastReport | None = None
    cluster: list[dict] | None = None   # with --scheduler: per statistics pass and colour, what the cluster did


    def __repr__(self) -> str:  # the sizes and costs, never the pixels
        d = self.plan.as_dict()
        image = f"{self.image.shape[1]}x{self.image.shape[0]} in memory" if self.image is not None else "on disk"
        return (f"Result({d['width']}x{d['height']}, output={str(self.output) if self.output else None!r}, "
                f"image {image}, network={self.network!r}, wall_s={self.wall_s:.1f}, levels={len(self.levels)}, "
                f"planned peak {d['peak_bytes'] / 2**30:.2f} GiB)")


STRIP = 256  # rows per strip when a full-size buffer is processed piecewise


def to_gray(canvas: np.ndarray) -> None:
    """Every pixel of a canvas (RAM or disk) to its luminance, in strips."""
    for y in range(0, canvas.shape[0], STRIP):
        colour.to_gray(canvas[y:y + STRIP])
        release(canvas)


def examples_at(job: Job, s: Settings, width: int, height: int) -> tuple[list[np.ndarray], list[float]]:
    """A texture's examples at the size they have at a level of ``width`` x ``height``, and their
    weights."""
    images = []
    for path, _ in job.styles:
        ew, eh = style_size(job, io.image_size(path, "example"), width, height, s)
        images.append(io.load_image(path, size=(ew, eh), what="example"))
    return images, [weight for _, weight in job.styles]


def match_examples(canvas: np.ndarray, job: Job, s: Settings) -> None:
    """Give a texture the colour mean and covariance of its examples (mixed by weight), each read
    at the size it has at the finest level, so at the scale its pixels appear in the output."""
    images, weights = examples_at(job, s, job.width, job.height)
    target = colour.mix_stats([colour.colour_stats(ex) for ex in images], weights)
    transform = colour.histogram_transform(colour.colour_stats(canvas, after_strip=lambda: release(canvas)), target)
    for y in range(0, canvas.shape[0], STRIP):
        canvas[y:y + STRIP] = transform(canvas[y:y + STRIP])
        release(canvas)


def finish(job: Job, s: Settings, canvas: np.ndarray, buffers: Buffers, checkpoints: Checkpoints | None = None,
           progress=ignore) -> Path | None:
    """Apply the luminance option (strip by strip, the content in a buffer the plan allows) and
    write the output atomically."""
    if s.preserve_color == "luminance":
        content = io.load_image(job.content, size=(job.width, job.height), what="content",
                                out=buffers.empty("content-final", canvas.shape))
        for y in range(0, canvas.shape[0], STRIP):  # in strips: no full-size temporaries
            canvas[y:y + STRIP] = colour.preserve_luminance(canvas[y:y + STRIP], content[y:y + STRIP])
            release(canvas, content)
        buffers.discard(content)
    if job.masks.keep is not None:  # the photo where the keep mask is white (hires.engine.regions)
        photo = io.load_image(job.content, size=(job.width, job.height), what="content",
                              out=buffers.empty("content-kept", canvas.shape))
        blend_kept(canvas, photo, job.masks.keep_map(job.width, job.height), lambda: release(canvas, photo))
        buffers.discard(photo)
    if job.texture and s.match_colors:
        match_examples(canvas, job, s)
    if s.mode == "gray":
        to_gray(canvas)
    if job.output is None:
        return None
    # a run killed while writing: the next run removes the file it made (its device and inode recorded)
    made = checkpoints.remember_partial_output if checkpoints is not None else None
    progress(Writing(str(job.output)))
    # (a disk-backed canvas is written from its memmap, a window at a time: output.release_while_written);
    # a file that appeared at the output during the render is replaced only with --overwrite
    out = output.save_image(canvas, job.output, s.bit_depth, s.dpi, s.quality, overwrite=job.overwrite,
                            pyramid=s.pyramid, gray=s.mode == "gray", on_created=made)
    if checkpoints is not None:
        checkpoints.remember_partial_output(None)
    return out
