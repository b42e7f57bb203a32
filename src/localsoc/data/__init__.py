"""The canonical SSL table, importers and the embedded simulator."""
