"""Errors that hires raises for bad input.  The CLI maps them to exit code 2 and one line."""


class HiresError(Exception):
    """Base class: the message names the parameter, the value and the fix."""

    exit_code = 2


class InputError(HiresError):
    """An input file is missing, unreadable, not an image, or corrupt."""


class OptionError(HiresError, ValueError):
    """An option has a value hires cannot use."""


class OutputError(HiresError):
    """The output cannot be written where it was asked for."""


class WeightsError(HiresError):
    """Network weights are missing, fail verification, or cannot be fetched."""


class BudgetError(HiresError):
    """The memory budget is too small to run at all."""


class NumericalError(HiresError):
    """A render's loss or pixels stopped being finite numbers: it stops, writing nothing."""

    exit_code = 1
