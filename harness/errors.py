"""One exception type for problems the user can fix (bad recipe, missing model, bad data row).

The CLI prints these as a single clear message instead of a traceback.
"""


class HarnessError(Exception):
    """An error caused by user input; its message names the file, key and what is allowed."""
