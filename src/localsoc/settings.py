"""Kedro project settings."""

from kedro.config import OmegaConfigLoader

from localsoc.hooks import StageTimerHooks
from localsoc.quiet_start import import_tensorflow_quietly

# The pipelines import TensorFlow; import it first with its start-up lines off the console
# (`kedro run` and the DVC stages; LOCALSOC_VERBOSE=1 or `localsoc --verbose` shows them).
import_tensorflow_quietly()

HOOKS = (StageTimerHooks(),)
# kedro-viz (make viz) registers hooks through its entry points that write every run's events
# and dataset statistics to .viz/: not wanted in a study run
DISABLE_HOOKS_FOR_PLUGINS = ("kedro-viz",)

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # An environment overrides only the keys it names (conf/demo changes one size, not the
    # whole `ingest` block).
    "merge_strategy": {"parameters": "soft"},
}
