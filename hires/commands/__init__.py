"""The ``hires`` command line: ``render``, ``texture``, ``plan``, ``batch``, ``style``, ``serve``.
The top floor: imports any of hires, and nothing imports it.
"""
