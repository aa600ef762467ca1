"""The plan of memory and time before a render, and this machine's measured costs behind it.
Imports hires.core, hires.engine and hires.fast.
"""
