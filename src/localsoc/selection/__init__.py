"""Sample selection: Kennard-Stone calibration splits and RS-LOCAL library localisation."""

from localsoc.selection.kennard_stone import KennardStone, farthest_pair
from localsoc.selection.rslocal import RSLocal, draw_subsets, score_subsets

__all__ = ["KennardStone", "RSLocal", "draw_subsets", "farthest_pair", "score_subsets"]
