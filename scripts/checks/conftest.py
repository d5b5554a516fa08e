"""Shared by the check suites of scripts/checks (test_deploy.py, test_protocol.py).

Each suite runs on its own: `python3 -m pytest scripts/checks/test_deploy.py` with a Python that
has the suite's requirements-*.txt; scripts/check-deploy and scripts/check-protocol install them
into a virtual environment of their own (.build-tools/) and run pytest there.
"""

import pytest

_notes = pytest.StashKey[list]()


@pytest.fixture
def note(request):
    """Records one line of what a passing check saw (how many resources, which schema version,
    whether kubectl's render was compared): a pass alone does not say how much was checked. The
    lines are printed at the end of the run."""
    notes = request.config.stash.setdefault(_notes, [])
    return lambda text: notes.append(f"{request.node.name}: {text}")


def pytest_terminal_summary(terminalreporter, config):
    notes = config.stash.get(_notes, [])
    if notes:
        terminalreporter.section("what the checks saw", sep="-")
        for line in notes:
            terminalreporter.write_line(line)
