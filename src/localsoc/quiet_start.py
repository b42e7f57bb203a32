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

A console that is not a terminal (``make run > log``, CI) gets plain lines:
:func:`plain_progress_when_piped` turns a progress bar's carriage returns into line ends and
lets a bar print at most one line every :data:`PIPED_PROGRESS_INTERVAL_S` seconds, and
:class:`LibraryInfoFilter` keeps other libraries' INFO records (Great Expectations' "Created
temporary directory ... ephemeral docs site") off the console handlers.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from typing import TextIO

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


#: Seconds between two lines of a progress bar when the console is not a terminal.
PIPED_PROGRESS_INTERVAL_S = 30


class CarriageReturnLines:
    """A text stream over ``stream`` that ends the line where a progress bar returns the
    carriage (``\r``): each redraw of a bar becomes one plain line, and the blank redraws that
    clear a bar are dropped."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._line_open = False  # text written since the last line end

    def write(self, text: str) -> int:
        out = []
        for index, part in enumerate(text.replace("\r\n", "\n").split("\r")):
            if index and self._line_open:
                out.append("\n")
                self._line_open = False
            if not part.strip(" "):
                continue  # nothing, or a bar cleared with spaces
            out.append(part)
            self._line_open = not part.endswith("\n")
        self._stream.write("".join(out))
        return len(text)

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def plain_progress_when_piped() -> None:
    """When stderr is not a terminal: progress bars (tqdm, imported after this call) print a
    plain line at most every :data:`PIPED_PROGRESS_INTERVAL_S` seconds (``TQDM_MININTERVAL``,
    unless set) and their carriage returns become line ends (:class:`CarriageReturnLines`).
    Does nothing on a terminal."""
    if sys.stderr is None or isinstance(sys.stderr, CarriageReturnLines) or sys.stderr.isatty():
        return
    os.environ.setdefault("TQDM_MININTERVAL", str(PIPED_PROGRESS_INTERVAL_S))
    sys.stderr = CarriageReturnLines(sys.stderr)


class LibraryInfoFilter(logging.Filter):
    """Passes LocalSOC's records and every library's warnings and errors; a library's INFO and
    DEBUG records (some set their own loggers to INFO when imported, so the logging
    configuration's levels do not hold them) are left out."""

    def filter(self, record: logging.LogRecord) -> bool:
        return (record.levelno >= logging.WARNING or record.name == "localsoc"
                or record.name.startswith("localsoc."))


def filter_library_info() -> None:
    """Add :class:`LibraryInfoFilter` to the root logger's handlers (once)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, LibraryInfoFilter) for f in handler.filters):
            handler.addFilter(LibraryInfoFilter())
