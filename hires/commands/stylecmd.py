"""``hires style fit`` and ``hires style show``: the command line of fitted styles (hires.fit.fitjob,
hires.fast.hstyle)."""
from __future__ import annotations

import argparse
from pathlib import Path



def add_parser(sub, parser_class) -> None:
    from hires.fit.fitoptions import FITTED, FitOptions
    d = FitOptions()
    s = sub.add_parser("style", help="fit the fast network to your painting (.hstyle), or show a fitted style")
    ssub = s.add_subparsers(dest="action", required=True, parser_class=parser_class)
    f = ssub.add_parser("fit", help="fit the fast network's style to one or more paintings, in minutes on a CPU")
    f.add_argument("painting", nargs="+", metavar="PAINTING[:WEIGHT]", help="the painting(s), with weights")
    f.add_argument("-o", "--output", required=True, metavar="NAME.hstyle", help="the fitted style file to write")
    f.add_argument("--photos", metavar="DIR",
                   help="a folder of photos to fit on, every 4th (by name) held out to measure the fit "
                        "(default: the photos bundled with hires)")
    f.add_argument("--minutes", default=str(d.minutes), metavar="N", help=f"time budget (default: {d.minutes:g})")
    f.add_argument("--memory", default="2GiB", metavar="SIZE", help="memory budget (default: 2GiB)")
    f.add_argument("--size", default=str(d.size), metavar="PX",
                   help=f"long side of the photos and paintings during the fit (default: {d.size})")
    f.add_argument("--crop", default=str(d.crop), metavar="PX", help=f"training crop side (default: {d.crop})")
    f.add_argument("--fit", dest="fitted", default=d.fitted, choices=FITTED,
                   help="what is fitted: every norm's scale and shift, or the predictor's 100-d vector "
                        f"(default: {d.fitted}; docs/networks.md says why)")
    f.add_argument("--seed", default=str(d.seed), metavar="N", help=f"crops' random seed (default: {d.seed})")
    f.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    f.add_argument("--fresh", action="store_true", help="start afresh, ignoring the state an interrupted fit saved")
    f.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    f.add_argument("--json-progress", action="store_true", help="one JSON object per event on stderr")
    f.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    sh = ssub.add_parser("show", help="print what a fitted style file holds")
    sh.add_argument("file", metavar="NAME.hstyle")
    sh.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)


def run(args, console, progress) -> int:
    from hires.fast import hstyle
    if args.action == "show":
        print("\n".join(hstyle.describe(hstyle.load(args.file, "style show"), args.file)))
        return 0
    from hires.fit.fitjob import FitRequest, fit_style
    from hires.fit.fitoptions import FitOptions
    from hires.core.coercion import coerce_value
    options = FitOptions(minutes=coerce_value(float, args.minutes, "--minutes"),
                         size=coerce_value(int, args.size, "--size"), crop=coerce_value(int, args.crop, "--crop"),
                         fitted=args.fitted, seed=coerce_value(int, args.seed, "--seed"))
    req = FitRequest(args.painting, Path(args.output), args.photos, options, args.memory, args.overwrite, args.fresh)
    with progress:
        result = fit_style(req, progress)
    if not (args.quiet or args.json_progress):
        console.print(f"{result.steps} steps in {result.seconds:.0f} s; held-out style loss {result.fitted['style']:.4g} "
                      f"against the predictor's {result.guess['style']:.4g} ({result.ratio:.2f}x)")
        print(result.path)
    return 0
