"""TOML presets (installed as hires.configs): schedules and named print sizes."""
