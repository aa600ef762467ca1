"""The bottom floor: errors, progress events, safe files, image input and output, buffers, colour,
settings and their coercion, presets, the process's set-up.  Imports nothing of hires above it.
"""
