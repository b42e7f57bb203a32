"""`make help` (also what a bare `make` prints) lists every target the Makefile documents with a
double-hash comment, the README's commands among them."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.conftest import PROJECT_ROOT


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")
@pytest.mark.parametrize("arguments", [["help"], []], ids=["make-help", "bare-make"])
def test_make_help_lists_the_documented_targets(arguments):
    done = subprocess.run(["make", "-s", "-C", str(PROJECT_ROOT), *arguments],
                          capture_output=True, text=True, check=True)
    documented = re.findall(r"^([a-z][a-z_-]*):[^#\n]*## (.+)$",
                            (PROJECT_ROOT / "Makefile").read_text(), flags=re.M)
    assert {"run", "test", "serve", "bench", "help"} <= {target for target, _ in documented}
    for target, text in documented:
        assert re.search(rf"^  make {target} +{re.escape(text)}$", done.stdout, flags=re.M), (
            target, done.stdout)
