"""The held-out style loss of a fit every 50 steps, for choosing what to fit and the step size.

    python benchmarks/style_fit_steps.py PAINTING norms 0.02 200
    python benchmarks/style_fit_steps.py PAINTING vector 0.02 200

Prints, every 50 steps, the seconds so far and the held-out style loss over the predictor's guess
(and the content loss beside the guess's), on the bundled photos (the rocket held out).
"""
import sys
import time

from hires.core import process
from hires.fit.fitoptions import FitOptions
from hires.fit.stylefit import Fit, load_inputs

process.tune_for_rendering()
painting, fitted, lr, steps = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
f = Fit(load_inputs([painting], None), FitOptions(fitted=fitted, lr=lr))
g = f.evaluate(f.guess)
print("guess", g, flush=True)
t = time.time()
for k in range(1, steps + 1):
    f.step()
    if k % 50 == 0:
        e = f.evaluate(f.params.as_arrays())
        print(k, round(time.time() - t), "style ratio %.3f" % (e["style"] / g["style"]),
              "content %.4f (guess %.4f)" % (e["content"], g["content"]), flush=True)
