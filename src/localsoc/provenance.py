"""Versions that travel with results: the code (package + git commit) and the data (hash)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pandas as pd

import localsoc


def data_version(*tables: pd.DataFrame) -> str:
    """A short content hash of one or more tables (row order and values)."""
    digest = hashlib.sha256()
    for table in tables:
        digest.update(",".join(map(str, table.columns)).encode())
        digest.update(pd.util.hash_pandas_object(table, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def code_version() -> str:
    """``<package version>+g<commit>[.dirty]`` when run from a git checkout, else the version."""
    version = localsoc.__version__
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root,
                                capture_output=True, text=True, timeout=5, check=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return version
    commit = commit.strip()
    return f"{version}+g{commit}{'.dirty' if dirty.strip() else ''}" if commit else version
