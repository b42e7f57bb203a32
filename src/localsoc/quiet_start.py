"""A quiet start for the command line: TensorFlow's start-up lines off the console.

TensorFlow's C++ runtime writes lines to the process's stderr (file descriptor 2) while it is
imported and when it first looks for devices: "All log messages before absl::InitializeLog()",
the oneDNN notice, "Could not find cuda drivers", "failed call to cuInit", the CPU feature
notice. They come before absl logging is set up, so ``TF_CPP_MIN_LOG_LEVEL`` does not hide
all of them. :func:`import_tensorflow_quietly` imports TensorFlow and Keras and lists the
devices with descriptor 2 pointed at a temporary file, then restores it: the lines that match
:data:`STARTUP_NOISE` are dropped (logged at DEBUG), any other line is written back to stderr,
and an import error is raised as usual after its output is shown.

``localsoc --verbose`` sets ``LOCALSOC_VERBOSE=1`` (inherited by the Kedro and DVC processes a
command starts); with it set, :func:`import_tensorflow_quietly` does nothing and TensorFlow
prints what it prints. The Kedro settings call it too, so ``kedro run`` (and the DVC stages that
run it) start quietly as well.

Nothing here changes numerics: ``TF_ENABLE_ONEDNN_OPTS`` is left as the user set it (its
notice is hidden, the oneDNN kernels stay as they are).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile

logger = logging.getLogger(__name__)

#: Set (to anything but "" or "0") to see TensorFlow's start-up lines.
VERBOSE_ENV = "LOCALSOC_VERBOSE"

#: TensorFlow / absl / CUDA start-up lines that carry no information for a LocalSOC user.
STARTUP_NOISE = re.compile(
    r"All log messages before absl::InitializeLog|oneDNN custom operations are on|"
    r"Could not find cuda drivers|failed call to cuInit|cuda_platform\.cc|cudart_stub\.cc|"
    r"cpu_feature_guard\.cc|This TensorFlow binary is optimized|To enable the following "
    r"instructions|rebuild TensorFlow with the appropriate compiler flags|"
    r"Unable to register cu(DNN|FFT|BLAS) factory|computation placer already registered|"
    r"TF-TRT Warning"
)


def split_startup_output(text: str) -> tuple[list[str], list[str]]:
    """(noise lines, other lines) of captured start-up output."""
    noise, other = [], []
    for line in text.splitlines():
        if not line.strip():
            continue
        (noise if STARTUP_NOISE.search(line) else other).append(line)
    return noise, other


def import_tensorflow_quietly() -> None:
    """Import TensorFlow and Keras and initialise the devices with their start-up lines
    hidden (see the module notes). Does nothing when TensorFlow is already imported or
    ``LOCALSOC_VERBOSE`` is set."""
    if "tensorflow" in sys.modules or os.environ.get(VERBOSE_ENV, "") not in ("", "0"):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            import keras  # noqa: F401
            import tensorflow as tf

            tf.config.list_physical_devices()
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            noise, other = split_startup_output(sink.read().decode(errors="replace"))
            for line in noise:
                logger.debug("TensorFlow start-up (hidden): %s", line)
            if other:
                sys.stderr.write("\n".join(other) + "\n")
                sys.stderr.flush()
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:  # absl comes with TensorFlow; without it there is nothing to quieten
        pass
