"""The options of a style fit (hires.fit.stylefit), apart so that the command line builds its help
without importing torch."""
from __future__ import annotations

import math
from dataclasses import dataclass

from hires.core.config import Settings
from hires.core.errors import OptionError

FITTED = ("norms", "vector")
# bytes a fit holds: the interpreter, torch and both networks; then per crop px, the transformer's and
# the hybrid network's activations kept for the backward pass (measured: see docs/networks.md)
FIXED_BYTES = 450 << 20
BYTES_PER_CROP_PX = 6000


@dataclass(frozen=True)
class FitOptions:
    minutes: float = 5.0        # the time budget
    size: int = 512             # the photos' and the paintings' long side during the fit, px
    crop: int = 256             # training crops' side, px
    batch: int = 2              # crops per step
    lr: float = 0.02
    fitted: str = "norms"
    seed: int = 0
    style_weight: float = Settings.style_weight   # the optimised method's own defaults, from their one place
    content_weight: float = Settings.content_weight
    max_steps: int | None = None  # a step count instead of the time budget (tests, reproducible fits)

    def check(self) -> "FitOptions":
        if not (self.minutes > 0 and math.isfinite(self.minutes)):
            raise OptionError(f"--minutes: {self.minutes!r} is not a positive number of minutes, e.g. 5")
        if not 64 <= self.size <= 2048:
            raise OptionError(f"--size: {self.size!r} is not between 64 and 2048 px, e.g. 512")
        if not 32 <= self.crop <= self.size:
            raise OptionError(f"--crop: {self.crop!r} is not between 32 px and --size ({self.size})")
        if self.fitted not in FITTED:
            raise OptionError(f"--fit: {self.fitted!r} is not one of {', '.join(FITTED)}")
        if not 1 <= self.batch <= 16:
            raise OptionError(f"--batch: {self.batch!r} is not between 1 and 16")
        return self

    def peak_bytes(self) -> int:
        return FIXED_BYTES + BYTES_PER_CROP_PX * self.crop * self.crop
