"""The one exception type for user errors.

Every problem caused by what the user passed in (a file, a key, an option) raises
:class:`HRAlignError`. Its message names the thing, what was found and what was expected,
in one line; the CLI prints it and exits with code 2 (see ``hralign.cli.main``).
"""

from __future__ import annotations


class HRAlignError(ValueError):
    """A user error: bad file, key, option or combination. One line, no traceback."""


def expect(condition: bool, message: str) -> None:
    """Raise :class:`HRAlignError` with ``message`` unless ``condition`` holds.

    Used instead of ``assert`` on user input (asserts vanish under ``python -O``).
    """
    if not condition:
        raise HRAlignError(message)
