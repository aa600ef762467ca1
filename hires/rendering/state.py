"""What every level of one render shares (``RenderState``), apart so that the run and each level's
set-up (hires.rendering.levelsetup) read the same record.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hires.core.canvas import Buffers
from hires.core.config import Settings
from hires.engine.checkpoints import Checkpoints
from hires.engine.engine import Engine
from hires.engine.reports import Counters
from hires.planning.planner import Plan
from hires.rendering.request import Job
from hires.rendering.snapshots import Snapshots



@dataclass(kw_only=True)
class RenderState:
    """What every level of one render shares, fixed before the first level runs; a level's canvas
    is handed from level to level (``run_level``), not kept here.  The fast start's two images are
    the one thing levels add: made once, when a level first needs them."""
    job: Job
    settings: Settings
    plan: Plan
    engine: Engine
    counters: Counters          # the render's accounting (hires.engine.reports)
    scratch: Buffers            # records every scratch file of the render, for cleanup
    checkpoints: Checkpoints
    colour_ref: tuple | None    # the content's colour statistics (histogram transfer)
    rng: np.random.Generator
    progress: object
    snapshots: Snapshots | None = None
    executor: object | None = None          # hires.engine.cluster.DaskRunner when tiles run on a cluster
    fast_image: np.ndarray | None = None   # the fast start at its working size, once made
    painted: np.ndarray | None = None      # the multi-scale fast start at the output size, once made
