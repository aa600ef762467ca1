"""The ``hires`` command.  Flags derive from Settings; progress is rendered by ``hires.core.progress``."""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys

from hires.core.config import Settings, flag
from hires.core.presets import resolve_settings
from hires.core.errors import HiresError
from hires.core.progress import Failed, JsonProgress, make_progress

log = logging.getLogger("hires")


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line, exit code 2."""

    def error(self, message):
        self.exit(2, f"hires: error: {message} (see `{self.prog} --help`)\n")


class HelpAll(argparse.Action):
    """``--help-all``: the command's help with the expert options too."""

    def __init__(self, option_strings, dest, **kw):
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0,
                         help="show this help with the expert options too, and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        _by_prog(build_parser(expert=True), parser.prog).print_help()
        parser.exit()


def _by_prog(parser: argparse.ArgumentParser, prog: str) -> argparse.ArgumentParser:
    if parser.prog == prog:
        return parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found = _by_prog(sub, prog)
                if found is not None:
                    return found
    return None


def add_settings_flags(p: argparse.ArgumentParser, only: set[str] | None = None, expert: bool = False) -> None:
    """One flag per Settings field, in the groups of ``flags.GROUPS``, defaulting to 'not given' so
    presets are not overridden (the expert ones, ``flags.EXPERT``, are accepted but shown only with
    ``expert``).  Values stay strings here: Settings coerces and checks them, the same way as TOML
    values."""
    from hires.core.config import ALIASES
    from hires.core.flags import EXPERT, GROUPS, metavar, shown_default
    from hires.core.presets import preset_names
    g = p.add_argument_group("presets")
    g.add_argument("--preset", metavar="NAME", help=f"a preset ({', '.join(preset_names())}) or a .toml path")
    g.add_argument("--config", metavar="FILE.toml", help="a TOML file of settings, applied over --preset")
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    old = {new: old for old, new in ALIASES.items()}
    for group, names in GROUPS.items():
        names = [n for n in names if only is None or n in only]
        if not names:
            continue
        g = p.add_argument_group(group)
        for name in names:
            f = fields[name]
            default = f.default
            text = f"{f.metadata['help']} (default: {shown_default(default, f.metadata.get('unset'))})"
            kw = dict(dest=name, default=argparse.SUPPRESS,
                      help=text if expert or name not in EXPERT else argparse.SUPPRESS)
            flags = [f"--{flag(name)}"] + ([f"--{flag(old[name])}"] if name in old else [])
            if isinstance(default, bool):
                g.add_argument(*flags, action=argparse.BooleanOptionalAction, **kw)
            else:
                g.add_argument(*flags, metavar=metavar(name), **kw)


def asked(args, output=None):
    """What the command line gave, for ``resolver.resolve``: the settings and run-option flags that
    were given (the others stay 'not given', so a preset's values are not overridden)."""
    from hires.rendering.request import RUN_FIELDS
    from hires.rendering.resolver import Asked
    texture = getattr(args, "kind", args.command) == "texture"
    names = {f.name for f in dataclasses.fields(Settings)}
    return Asked(texture=texture, content=None if texture else args.content,
                 styles=args.example if texture else args.style, output=output, size=args.size,
                 masks=getattr(args, "mask", None), keep=getattr(args, "keep", None),
                 overwrite=getattr(args, "overwrite", False), preset=args.preset, config=args.config,
                 values={k: v for k, v in vars(args).items() if k in names},
                 run={k: getattr(args, k) for k in RUN_FIELDS if hasattr(args, k)}, label=lambda name: f"--{flag(name)}")


def settings_from_args(args) -> Settings:
    """Built-in defaults, then --preset, then --config, then the flags given."""
    a = asked(args)
    return resolve_settings(dict(a.values), preset=a.preset, config=a.config, label=a.label)


SKIP_TEXTURE = {"content_layer", "init", "preserve_color", "method", "strength", "fast_size",
                "builtin_style", "style_scale", "multiscale"}
SKIP_RENDER = {"seamless", "example_scale", "match_colors", "detail", "start", "variety"}


def _sizes(q, default: str):
    q.add_argument("--size", "--print-size", dest="size", metavar="SIZE",
                   help="output WIDTHxHEIGHT in px (6000x4500), a physical size at --dpi (30x40cm, 297x420mm, "
                        f"12x16in: rounded to the nearest px, and the file records it) or a named print size "
                        f"(a4, a3, ...) (default: {default})")


def _render_args(q, expert: bool, everyday=None):
    """The arguments of a render: the photo, styles and size, then ``everyday`` (the production
    options, where the command has them), then the settings by group."""
    q.add_argument("--help-all", action=HelpAll)
    q.add_argument("content", help="the photo to stylise")
    q.add_argument("--style", "-s", action="append", metavar="IMAGE[:WEIGHT]",
                   help="style image, repeatable with weights: --style a.jpg:0.7 --style b.jpg:0.3")
    q.add_argument("--mask", action="append", metavar="IMAGE",
                   help="a gray mask giving the --style of the same position its part of the frame (white: its "
                        "region, gray: partly), repeatable; what no mask covers takes the styles without one")
    q.add_argument("--keep", metavar="IMAGE", help="a gray mask of what stays photographic (white: the photo)")
    _sizes(q, "the preset's, else the content's size")
    if everyday:
        everyday(q)
    add_settings_flags(q, {f.name for f in dataclasses.fields(Settings)} - SKIP_RENDER, expert)


def _texture_args(q, expert: bool, everyday=None):
    from hires.rendering.request import TEXTURE_SIZE
    q.add_argument("--help-all", action=HelpAll)
    q.add_argument("example", nargs="+", metavar="IMAGE[:WEIGHT]", help="example texture(s), with weights")
    _sizes(q, f"the preset's, else {TEXTURE_SIZE}")
    if everyday:
        everyday(q)
    add_settings_flags(q, {f.name for f in dataclasses.fields(Settings)} - SKIP_TEXTURE, expert)


def _reporting(q):
    q.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    q.add_argument("--json-progress", action="store_true",
                   help="one JSON object per event on stderr, for scripts (plan, level_start, tile_start, "
                        "tile_end, iteration, snapshot, write, done, error; each with elapsed_s and eta_s)")
    q.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")


def _common(q):
    from hires.core.flags import shown_default
    from hires.rendering.request import RunOptions
    q = q.add_argument_group("production")
    q.add_argument("-o", "--output", metavar="FILE",
                   help="output file: .png .jpg .webp .tif (default: NAME-hires.png)")
    q.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    for f in dataclasses.fields(RunOptions):  # values are strings here: run_options_from checks them
        kw = dict(dest=f.name, default=argparse.SUPPRESS)
        if isinstance(f.default, bool):
            q.add_argument(f"--{flag(f.name)}", action="store_true", help=f.metadata["help"], **kw)
        else:
            q.add_argument(f"--{flag(f.name)}", metavar=f.metadata["metavar"],
                           help=f"{f.metadata['help']} (default: {shown_default(f.default, f.metadata['unset'])})", **kw)
    _reporting(q)


def build_parser(expert: bool = False) -> Parser:
    p = Parser(prog="hires", description="Neural style transfer and texture synthesis at print scale.")
    p.add_argument("--version", action="version", version=f"hires {__import__('hires').__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    r = sub.add_parser("render", help="stylise a photo with one or more paintings")
    _render_args(r, expert, _common)
    t = sub.add_parser("texture", help="synthesise a texture from one or more examples")
    _texture_args(t, expert, _common)

    pl = sub.add_parser("plan", help="print the levels, tiles, memory and time a render would take")
    plsub = pl.add_subparsers(dest="kind", required=True, parser_class=Parser)
    for kind, fill in (("render", _render_args), ("texture", _texture_args)):
        q = plsub.add_parser(kind, help=f"plan `hires {kind}` with the same arguments")
        fill(q, expert)
        q.add_argument("-o", "--output", help=argparse.SUPPRESS)
        q.add_argument("--json", action="store_true", help="print the plan as JSON")
        q.add_argument("--no-calibrate", action="store_true", help="skip the short speed measurement")
        q.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)

    _other_commands(sub)
    return p


def _other_commands(sub) -> None:
    """batch, presets, weights, style and serve."""
    b = sub.add_parser("batch", help="run the renders of one or more job files, one after another")
    b.add_argument("jobs", nargs="+", metavar="JOBS.toml", help="files of [[job]] tables (see the README)")
    b.add_argument("--report", metavar="FILE.json", help="write each job's status, time, peak memory and output")
    b.add_argument("--scheduler", metavar="local:N|tcp://HOST:PORT",
                   help="run the jobs at once on a Dask cluster, each job one task retried if its worker dies "
                        "(outputs on a shared file system); pip install 'hires[distributed]'")
    _reporting(b)

    ps = sub.add_parser("presets", help="list the presets (schedules and sizes) with what they do")
    ps.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)

    w = sub.add_parser("weights", help="find or download the VGG19 weights")
    wsub = w.add_subparsers(dest="action", required=True, parser_class=Parser)
    st = wsub.add_parser("status", help="say which weights would be used, from where")
    st.add_argument("--weights", help="a weights file to check")
    st.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    fe = wsub.add_parser("fetch", help="download vgg19-dcbb9e9d.pth (resumable, verified)")
    fe.add_argument("--dest", help="folder to put it in (default: torch's hub checkpoint folder)")
    fe.add_argument("--url", help=argparse.SUPPRESS)
    fe.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)

    from hires.commands import servecmd, stylecmd
    stylecmd.add_parser(sub, Parser)
    servecmd.add_parser(sub, Parser)


def progress_kind(args) -> str:
    return "json" if getattr(args, "json_progress", False) else "quiet" if getattr(args, "quiet", False) else "rich"


# ---------------------------------------------------------------- commands

def run_options(args):
    from hires.rendering.request import run_options_from
    a = asked(args)
    return run_options_from(dict(a.run), label=a.label)


def cmd_render(args, console, progress) -> int:
    from hires.rendering.pipeline import run
    from hires.rendering.request import default_output
    from hires.rendering.resolver import resolve
    first = args.example[0] if args.command == "texture" else args.content
    r = resolve(asked(args, args.output if args.output is not None else default_output(first)))
    with progress:
        result = run(r.job, r.settings, progress, r.options)
    if progress_kind(args) == "rich":
        console.print(f"{result.network} network, {result.wall_s:.1f} s")
        print(result.output)
    return 0


def cmd_batch(args, console) -> int:
    from rich.table import Table

    from hires.rendering.batch import check_report_path, run_batch
    kind = progress_kind(args)
    if args.report:
        check_report_path(args.report)  # before any job runs

    def said(job, outcome):
        if kind == "rich":
            console.print(f"[{outcome.status}] {outcome.name}: {outcome.error or outcome.output}")
        elif kind == "json":
            sys.stderr.write(json.dumps({"event": "job_end", **dataclasses.asdict(outcome)}) + "\n")

    report = run_batch(args.jobs, kind, said, args.scheduler)
    if args.report:
        from hires.core.output import write_text_atomic
        write_text_atomic(args.report, json.dumps(report.as_dict(), indent=2) + "\n")
    if kind == "rich":
        table = Table("job", "status", "wall", "peak RSS", "output / error", title="hires batch")
        for o in report.outcomes:
            rss = f"{o.peak_rss_bytes / 2**30:.2f} GiB" if o.peak_rss_bytes else ""
            table.add_row(o.name, o.status, f"{o.wall_s:.1f} s" if o.wall_s else "", rss, o.error or o.output or "")
        console.print(table)
    for o in report.outcomes:
        if o.status == "failed" and kind != "json":
            sys.stderr.write(f"hires: error: {o.name}: {o.error}\n")
    return 1 if report.failed else 0


def cmd_presets(args, console) -> int:
    from hires.core.presets import presets
    for name, table in presets().items():
        size = f" [{table['size']}]" if table.get("size") else ""
        print(f"{name}{size}: {table.get('description', '')}")
    return 0


def cmd_plan(args, console) -> int:
    from hires.api import plan_of
    from hires.rendering.resolver import resolve
    p = plan_of(resolve(asked(args)), calibrate=not args.no_calibrate)
    print(json.dumps(p.as_dict(), indent=2) if args.json else "\n".join(p.describe()))
    return 0


def cmd_weights(args, console) -> int:
    from hires.engine import nets
    if args.action == "status":
        found = nets.find_weights(args.weights)
        if found.path is None:
            print(f"vgg19 weights: not found (looked in {', '.join(found.searched)})")
            print("the random network will be used; run `hires weights fetch` for better results")
            return 0
        digest, official = nets.check_weights(found.path)
        print(f"vgg19 weights: {found.path} (from {found.source}), SHA-256 {digest[:16]}... "
              + ("verified: torchvision's " + nets.WEIGHTS_NAME if official else
                 f"unverified: not torchvision's {nets.WEIGHTS_NAME} (it would be loaded as a plain state dict, "
                 "checked for shapes and finite values)"))
        return 0
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn
    # the bar appears with the first bytes: a fetch that cannot start is its error line alone
    bar = Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(), console=console)
    task = None

    def received(done, total):
        nonlocal task
        if task is None:
            bar.start()
            task = bar.add_task("vgg19 weights", total=None)
        bar.update(task, completed=done, total=total or None)

    try:
        path = nets.fetch_weights(args.dest, args.url or nets.WEIGHTS_URL, progress=received)
    finally:
        bar.stop()
    print(f"vgg19 weights: {path} verified")
    return 0


def main(argv=None) -> int:
    from rich.console import Console

    from hires.core.process import huge_pages_for_torch
    huge_pages_for_torch()  # before any command loads torch
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="hires: %(message)s")
    if not debug:  # libvips' own warnings repeat what our one-line errors say
        logging.getLogger("pyvips").setLevel(logging.CRITICAL)
    console = Console(stderr=True)
    progress = make_progress(progress_kind(args), console)
    try:
        if args.command in ("render", "texture"):
            return cmd_render(args, console, progress)
        if args.command == "plan":
            return cmd_plan(args, console)
        if args.command == "batch":
            return cmd_batch(args, console)
        if args.command == "presets":
            return cmd_presets(args, console)
        if args.command == "style":
            from hires.commands import stylecmd
            return stylecmd.run(args, console, progress)
        if args.command == "serve":
            from hires.commands import servecmd
            return servecmd.run(args)
        return cmd_weights(args, console)
    except HiresError as e:
        if debug:
            raise
        return _said(progress, str(e), e.exit_code)
    except KeyboardInterrupt:
        where = "the saved fit state" if args.command == "style" else "the last finished tile"
        return _said(progress, f"interrupted; run the same command again to resume from {where}", 130, "hires: ")
    except OSError as e:  # a disk that filled up, a file that vanished: still one line, no traceback
        if debug:
            raise
        return _said(progress, str(e), 1)
    except MemoryError:
        return _said(progress, "out of memory; lower --memory so the plan uses smaller tiles", 1)


def _said(progress, message: str, code: int, prefix: str = "hires: error: ") -> int:
    """Report how the command ended in one line: a JSON ``error`` event with --json-progress (once:
    the render may have sent it already; stderr then carries JSON only), else plain text."""
    if isinstance(progress, JsonProgress):
        if not progress.failed:
            progress(Failed(message))
    else:
        sys.stderr.write(f"{prefix}{message}\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
