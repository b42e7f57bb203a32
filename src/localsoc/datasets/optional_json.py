"""A JSON dataset that loads as an empty dict when the file does not exist yet."""

from __future__ import annotations

from kedro_datasets.json import JSONDataset


class OptionalJSONDataset(JSONDataset):
    def load(self):
        if not self.exists():
            return {}
        return super().load()
