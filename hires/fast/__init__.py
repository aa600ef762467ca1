"""The feed-forward network (Magenta's) at any size: its tiling, style codes and ``.hstyle`` files.
Imports hires.core and hires.engine.
"""
