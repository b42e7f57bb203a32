"""A directory of figures: saved from matplotlib figures (``atomic.MatplotlibDataset``: a dict
of file name to figure), loaded back as the image files' bytes, so that a later stage (the
report) can embed the figures a stage drew without drawing them again."""

from __future__ import annotations

from pathlib import Path

from localsoc.datasets.atomic import MatplotlibDataset


class FigureDirectoryDataset(MatplotlibDataset):
    """Saves like ``MatplotlibDataset`` (a dict of figures replaces the directory); loads as
    ``{file name: bytes}`` of the directory's files, sorted by name (empty when the directory
    does not exist)."""

    def load(self) -> dict[str, bytes]:
        directory = Path(str(self._filepath))
        if not directory.is_dir():
            return {}
        return {path.name: path.read_bytes() for path in sorted(directory.iterdir())
                if path.is_file() and not path.name.startswith(".")}
