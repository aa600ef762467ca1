"""Presets (``configs/*.toml``, installed as ``hires.configs``) and TOML files of settings: found by
name or path, read, applied over ``Settings`` through the one coercion path of ``hires.core.config``.
"""
from __future__ import annotations

from pathlib import Path

from hires.core.config import CONFIG_DIR, Settings, read_toml, settings_from_mapping
from hires.core.errors import OptionError


def preset_path(name: str) -> Path:
    p = Path(name)
    if p.suffix == ".toml" and p.exists():
        return p
    q = CONFIG_DIR / f"{name}.toml"
    if q.exists():
        return q
    known = preset_names()
    raise OptionError(f"--preset: {name!r} is neither a .toml file nor a preset ({', '.join(known)})")


def load_toml(path, base: Settings | None = None, what: str = "--config") -> Settings:
    """``base`` with the settings of a TOML file; errors name the file, the key and the allowed values."""
    values = read_toml(path, what)
    for key in JOB_KEYS:  # a preset may name a size: the job's, not a setting
        values.pop(key, None)
    return settings_from_mapping(values, base, source=str(path))


JOB_KEYS = ("description", "size")


def load_preset(name: str, base: Settings | None = None) -> Settings:
    return load_toml(preset_path(name), base, "--preset")


def resolve_settings(values: dict, *, preset: str | None = None, config=None, base: Settings | None = None,
                     source: str | None = None, label=None) -> Settings:
    """The settings a user asked for, in the one order every front end applies (the command line,
    job files, the Python API): the built-in defaults (or ``base``), then ``preset``, then the
    ``config`` TOML file, then ``values`` (field names or flags' spellings), each coerced and checked;
    errors name ``source`` and the key (or ``label(name)``)."""
    settings = load_preset(preset, base) if preset else (base or Settings())
    if config:
        settings = load_toml(config, settings, "--config")
    return settings_from_mapping(values, settings, source=source, label=label)


def preset_table(name: str) -> dict:
    """The raw table of a preset (its description and size included)."""
    return read_toml(preset_path(name), "--preset")


def presets() -> dict[str, dict]:
    """Every preset shipped with hires: name -> its table."""
    return {p.stem: preset_table(p.stem) for p in sorted(CONFIG_DIR.glob("*.toml")) if p.stem != "print_sizes"}


def preset_names() -> list[str]:
    """The names of the presets shipped with hires (without reading them)."""
    return [p.stem for p in sorted(CONFIG_DIR.glob("*.toml")) if p.stem != "print_sizes"]
