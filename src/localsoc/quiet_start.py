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
:func:`plain_progress_when_piped` turns a progress bar's redraws into plain lines, at most one
every :data:`PIPED_PROGRESS_INTERVAL_S` seconds per console, and
:class:`LibraryInfoFilter` keeps other libraries' INFO records (Great Expectations' "Created
temporary directory ... ephemeral docs site") off the console handlers.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
import tempfile
import time
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
        keep_absl_stream_open()
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
    keep_absl_stream_open()


class CurrentStderr:
    """A stream that writes to whatever ``sys.stderr`` is at each write and is never closed."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def close(self) -> None:
        """Never closes ``sys.stderr``: the stream belongs to whoever set it."""


def keep_absl_stream_open() -> None:
    """Point absl's logging handler (imported with TensorFlow) at :class:`CurrentStderr`.

    absl's handler keeps the ``sys.stderr`` it found at import. ``logging.config.dictConfig``
    (Kedro's logging set-up) shuts every handler down, and absl's ``close()`` then closes that
    stream: a caller that runs a command in-process (click's CliRunner in a notebook or a test)
    while ``sys.stderr`` is its own stream finds the stream it had before closed ("I/O
    operation on closed file"). Does nothing when absl is not imported."""
    absl_logging = sys.modules.get("absl.logging")
    if absl_logging is not None:
        absl_logging.get_absl_handler().python_handler.stream = CurrentStderr()


#: Seconds between two lines of a progress bar when the console is not a terminal.
PIPED_PROGRESS_INTERVAL_S = 30


class CarriageReturnLines:
    """A text stream over ``stream`` for a console that is not a terminal: a progress bar's
    redraws (text after a carriage return, ``\r``) become plain lines, at most one every
    ``interval_s`` seconds (the first state of a bar, then the latest every ``interval_s``, and
    its last state when the bar ends its line); a bar cleared with spaces leaves nothing."""

    def __init__(self, stream: TextIO, interval_s: float = PIPED_PROGRESS_INTERVAL_S) -> None:
        self._stream = stream
        self._interval_s = interval_s
        self._pending: str | None = None  # the latest redraw not written yet
        self._written_at = -math.inf  # when a redraw was last written
        self._line_open = False  # text written since the last line end

    def _emit(self, text: str, own_line: bool = False) -> None:
        if own_line and self._line_open:
            text = "\n" + text
        self._stream.write(text)
        self._line_open = not text.endswith("\n")

    def _redraw(self, part: str) -> None:
        if not part.strip(" "):
            self._pending = None  # a bar cleared with spaces
            return
        now = time.monotonic()
        if part.endswith("\n") or now - self._written_at >= self._interval_s:
            self._emit(part if part.endswith("\n") else part + "\n", own_line=True)
            self._pending, self._written_at = None, now
        else:
            self._pending = part

    def write(self, text: str) -> int:
        first, *redraws = text.replace("\r\n", "\n").split("\r")
        if first:
            if self._pending is not None:  # a bar's last state, ended by this text
                self._emit(self._pending + "\n", own_line=True)
                self._pending = None
                first = first.removeprefix("\n")
            if first:
                self._emit(first)
        for part in redraws:
            self._redraw(part)
        return len(text)

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def plain_progress_when_piped() -> None:
    """When stderr is not a terminal: progress bars print plain lines, one every
    :data:`PIPED_PROGRESS_INTERVAL_S` seconds at most (:class:`CarriageReturnLines`). Does
    nothing on a terminal."""
    if sys.stderr is None or isinstance(sys.stderr, CarriageReturnLines) or sys.stderr.isatty():
        return
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
