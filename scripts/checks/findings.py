"""How a check of scripts/checks reports what it found wrong."""

import pytest


def fail_on(problems, headline):
    """Fails the running test when PROBLEMS is not empty: HEADLINE, then one indented line per
    problem. No traceback: the problems are the whole message, and a reader fixes the files they
    name, not the check."""
    if problems:
        pytest.fail(headline + "".join(f"\n    {problem}" for problem in problems), pytrace=False)
