"""The hires command: renders, settings derived from the dataclass, one-line errors."""
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pyvips
import pytest

from hires.commands import cli
from hires.core.config import Settings, flag

ROOT = Path(__file__).resolve().parents[1]
FAST_FLAGS = ["--base-size", "64", "--iterations", "4", "--style-layers", "relu1_1,relu2_1",
              "--content-layer", "relu2_1"]


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "hires.commands.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd)


def test_render_command_writes_the_file(tmp_path, content_path, style_path):
    out = tmp_path / "out.tif"
    r = run("render", content_path, "--style", f"{style_path}:1", "--size", "80x60", "-o", out,
            "--bit-depth", "16", "--dpi", "200", *FAST_FLAGS)
    assert r.returncode == 0, r.stderr
    assert "network: hybrid" in r.stderr and r.stdout.strip() == str(out)
    im = pyvips.Image.new_from_file(str(out))
    assert (im.width, im.height, im.format) == (80, 60, "ushort") and round(im.xres * 25.4) == 200


def test_texture_command_and_quiet(tmp_path, texture_path):
    out = tmp_path / "t.png"
    r = run("texture", texture_path, "--size", "64x64", "-o", out, "--quiet", "--seamless", *FAST_FLAGS[:4])
    assert r.returncode == 0, r.stderr
    assert r.stderr == "" and r.stdout == ""  # --quiet: nothing but errors
    assert pyvips.Image.new_from_file(str(out)).width == 64


def test_every_setting_has_a_flag_with_the_dataclass_default():
    parser = cli.build_parser()
    render = parser._subparsers._group_actions[0].choices["render"]
    flags = {a.dest: a for a in render._actions}
    for f in dataclasses.fields(Settings):
        if f.name in cli.SKIP_RENDER:
            continue
        assert f.name in flags, f.name
        assert f"--{flag(f.name)}" in flags[f.name].option_strings
    args = parser.parse_args(["render", "c.png", "--style", "s.png", "--iterations", "5,3", "--memory", "2GiB"])
    s = cli.settings_from_args(args)
    assert s.iterations == (5, 3) and s.memory == "2GiB" and s.base_size == Settings().base_size


def _help(args, capsys) -> str:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(args)
    return capsys.readouterr().out


def _entry(text: str, option: str) -> str:
    """An option's entry in a help text: its line and the indented lines that follow, joined."""
    m = re.search(r"^  " + re.escape(option) + r"[ ,\n](.*?)(?=^  -|^\S|\Z)", text, re.M | re.S)
    return " ".join(m.group(0).split()) if m else ""


def test_help_shows_real_defaults_and_keeps_expert_options_for_help_all(capsys):
    """Every default as it is (0 and off were "none"), in one format; expert options only under
    --help-all, and accepted either way."""
    from hires.core.flags import EXPERT, shown_default
    from hires.rendering.request import RunOptions
    short, full = _help(["render", "--help"], capsys), _help(["render", "--help-all"], capsys)
    for f in dataclasses.fields(Settings):
        if f.name in cli.SKIP_RENDER:
            continue
        option = f"--{flag(f.name)}"
        assert bool(_entry(short, option)) == (f.name not in EXPERT), f.name
        assert _entry(full, option).endswith(f"(default: {shown_default(f.default, f.metadata.get('unset'))})"), f.name
        if f.default is None or f.default == ():   # what is used when the option is not given, not "none"
            assert "(default: none)" not in _entry(full, option), f.name
    assert _entry(full, "--seed").endswith("(default: 0)") and _entry(full, "--second-pass").endswith("(default: off)")
    assert _entry(short, "--snapshot-size").endswith("(default: 1024)")
    assert _entry(full, "--work-dir").endswith("(default: .NAME.hires-work beside the output)")
    for f in dataclasses.fields(RunOptions):
        assert _entry(short, f"--{flag(f.name)}"), f.name
        assert "(default: none)" not in _entry(short, f"--{flag(f.name)}"), f.name
    args = cli.build_parser().parse_args(["render", "c.png", "-s", "s.png", "--margin", "8", "--snapshot-size", "64"])
    assert cli.settings_from_args(args).margin == 8 and cli.run_options(args).snapshot_size == 64


def test_presets_load(tmp_path):
    args = cli.build_parser().parse_args(["render", "c.png", "--style", "s.png", "--preset", "draft",
                                          "--base-size", "200"])
    s = cli.settings_from_args(args)
    assert s.iterations[0] == 80 and s.base_size == 200  # preset, then explicit flags on top
    custom = tmp_path / "mine.toml"
    custom.write_text("tv_weight = 0.5\niterations = [7]\n")
    args = cli.build_parser().parse_args(["render", "c.png", "--style", "s.png", "--preset", str(custom)])
    assert cli.settings_from_args(args).iterations == (7,)


def test_weights_status_command(tmp_path):
    r = run("weights", "status")
    assert r.returncode == 0 and "not found" in r.stdout and "hires weights fetch" in r.stdout


def prepare(tmp_path, style):
    (tmp_path / "text.jpg").write_text("hello")
    good = Path(style).read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(good[: len(good) // 3])
    (tmp_path / "vgg19-dcbb9e9d.pth").write_bytes(b"truncated weights")


def bad_cases(tmp_path, content, style):
    o = tmp_path / "o.png"
    return {
        "missing file": (["render", tmp_path / "nope.jpg", "--style", style, "-o", o], "does not exist"),
        "missing style": (["render", content, "--style", tmp_path / "nope.jpg", "-o", o], "does not exist"),
        "folder as input": (["render", tmp_path, "--style", style, "-o", o], "folder"),
        "not an image": (["render", tmp_path / "text.jpg", "--style", style, "-o", o], "not a JPEG, PNG, TIFF, WebP image"),
        "corrupt image": (["render", content, "--style", tmp_path / "trunc.jpg", "-o", o, "--size", "64x48",
                           *FAST_FLAGS], "corrupt"),
        "zero size": (["render", content, "--style", style, "--size", "0x100", "-o", o], "positive"),
        "negative size": (["render", content, "--style", style, "--size", "-5x100", "-o", o], "size"),
        "garbled size": (["render", content, "--style", style, "--size", "big", "-o", o], "not a size"),
        "missing output folder": (["render", content, "--style", style, "-o", tmp_path / "no" / "o.png"],
                                  "does not exist"),
        "unknown extension": (["render", content, "--style", style, "-o", tmp_path / "o.xyz"], "extension"),
        "unknown option value": (["render", content, "--style", style, "--optimizer", "sgd", "-o", o],
                                 "is not one of auto, lbfgs, adam"),
        "bad memory": (["render", content, "--style", style, "--memory", "lots", "-o", o], "--memory"),
        "bad style weight": (["render", content, "--style", f"{style}:-1", "-o", o], "weight"),
        "weights fail verification": (["render", content, "--style", style, "-o", o, "--weights",
                                       tmp_path / "vgg19-dcbb9e9d.pth", "--size", "64x64"], "verification"),
        "texture without size": (["texture", style, "--size", "12", "-o", o], "not a size"),
    }


def main_exit(args) -> int:
    """Run the CLI in this process (fast); argparse's own errors exit through SystemExit."""
    try:
        return cli.main([str(a) for a in args])
    except SystemExit as e:
        return e.code


@pytest.mark.parametrize("case", list(bad_cases(Path("/x"), "c", "s")))
def test_bad_input_is_one_line_exit_2_and_no_output(tmp_path, content_path, style_path, case, capfd):
    prepare(tmp_path, style_path)
    args, needle = bad_cases(tmp_path, content_path, style_path)[case]
    code = main_exit(args)  # an exception escaping here would be a traceback for the user
    out, err = capfd.readouterr()
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hires: error:"), err
    assert needle in lines[0]
    assert not (tmp_path / "o.png").exists() and not list(tmp_path.glob(".o.*"))


def test_bad_input_from_a_real_process(tmp_path, content_path):
    r = run("render", content_path, "--style", tmp_path / "nope.jpg", "-o", tmp_path / "o.png")
    assert r.returncode == 2 and r.stderr.startswith("hires: error:") and len(r.stderr.splitlines()) == 1


def test_plan_command_json(content_path, style_path):
    r = run("plan", "render", content_path, "--style", style_path, "--size", "3000x2000", "--memory", "2GiB",
            "--json", "--no-calibrate")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["width"] == 3000 and len(plan["levels"]) >= 3
    assert plan["memory_budget_bytes"] == 2 * 2**30
    assert plan["levels"][-1]["tiles"] > 1


def test_plan_command_text_and_impossible_budget(content_path, style_path):
    r = run("plan", "render", content_path, "--style", style_path, "--size", "2000x1500")
    assert r.returncode == 0, r.stderr
    assert "level 0" in r.stdout and "estimated time" in r.stdout
    r = run("plan", "render", content_path, "--style", style_path, "--size", "6000x4500", "--memory", "300MB")
    assert r.returncode == 2 and "too small" in r.stderr and "Traceback" not in r.stderr


@pytest.fixture
def priced(monkeypatch):
    """This machine's costs as fixed figures: a plan in seconds, not after measuring (the plan's
    arithmetic and its text are what is tested here; measuring has tests of its own)."""
    from hires.fast import fast
    from hires.planning import probe
    monkeypatch.setattr(probe, "measure_costs", lambda settings, levels, *a, **kw: {
        lp.level.index: probe.TileCost(0.05, 0.02, 0.01, 0.001) for lp in levels if lp.level.iterations})
    monkeypatch.setattr(probe, "resample_rates", lambda *a: (1e-8, 1e-8))
    monkeypatch.setattr(fast, "measure_rate", lambda *a, **kw: 1e-7)


def test_plan_command_text_and_impossible_budget_quick(content_path, style_path, capfd, priced):
    """The quick twin of ``test_plan_command_text_and_impossible_budget`` (in process, the machine's
    costs fixed): each level and the time on stdout, and a budget too small for any tile one line
    and exit code 2."""
    capfd.readouterr()
    assert cli.main(["plan", "render", str(content_path), "--style", str(style_path), "--size", "2000x1500"]) == 0
    text = capfd.readouterr().out
    levels = re.findall(r"^\s*level (\d+)", text, re.M)
    assert levels and levels == [str(i) for i in range(len(levels))], text
    assert re.search(r"estimated time[^\n]*\d", text), text
    from helpers import one_line, run_cli
    line = one_line(*run_cli(["plan", "render", content_path, "--style", style_path, "--size", "6000x4500",
                              "--memory", "300MB"], capfd))
    assert "too small" in line


def test_readme_and_ci_run_the_same_test_command():
    """The README's first code block holds the two commands, and CI runs its test one, then only the
    long tests it leaves out (every test at every landing)."""
    import re
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", readme, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines()]
    assert commands[:2] == ["make demo", "make test"]
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
    assert ci[-2:] == ["make test", "make test-long"]


def test_fast_method_from_the_command_line(tmp_path, content_path, style_path):
    out = tmp_path / "fast.jpg"
    r = run("render", content_path, "--style", style_path, "--method", "fast", "--strength", "0.8",
            "--size", "533x400", "-o", out)
    assert r.returncode == 0, r.stderr
    assert "magenta" in r.stderr and r.stdout.strip() == str(out)
    assert pyvips.Image.new_from_file(str(out)).width == 533
    r = run("render", content_path, "--style", style_path, "--method", "fast", "--strength", "2", "-o", out)
    assert r.returncode == 2 and "--strength" in r.stderr and "between 0 and 1" in r.stderr


def test_plan_of_a_fast_render(content_path, style_path):
    r = run("plan", "render", content_path, "--style", style_path, "--method", "fast", "--fast-size", "0",
            "--size", "6000x4500", "--memory", "1GiB", "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["method"] == "fast" and plan["tiles"] > 1 and plan["canvas"] == "disk"
    assert (plan["working_width"], plan["working_height"]) == (6000, 4500)


def test_the_command_and_the_package_import_without_torch():
    """`hires --help` answers at once: the API loads lazily, so neither `import hires` nor the CLI
    module imports torch, numba or libvips."""
    probe = ("import sys, hires, hires.commands.cli; heavy = {'torch', 'numba', 'pyvips'} & set(sys.modules); "
             "print(sorted(heavy)); assert callable(hires.render) and 'torch' in sys.modules")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", r.stdout
