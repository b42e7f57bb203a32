"""A JSON dataset that loads as an empty dict when the file does not exist yet."""

from __future__ import annotations

from localsoc.datasets.atomic import JSONDataset


class OptionalJSONDataset(JSONDataset):
    def load(self):
        if not self.exists():
            return {}
        return super().load()
