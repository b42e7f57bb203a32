"""Kedro project settings."""

from kedro.config import OmegaConfigLoader

from localsoc.hooks import StageTimerHooks

HOOKS = (StageTimerHooks(),)

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # An environment overrides only the keys it names (conf/demo changes one size, not the
    # whole `ingest` block).
    "merge_strategy": {"parameters": "soft"},
}
