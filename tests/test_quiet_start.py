"""Quiet start: TensorFlow's start-up lines stay off the console unless `localsoc --verbose`."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from absl import logging as absl_logging

from localsoc.quiet_start import keep_absl_stream_open, split_startup_output

NOISE = ("absl::InitializeLog", "oneDNN custom operations", "cuda drivers", "cuInit",
         "cpu_feature_guard")


def test_known_start_up_lines_are_noise_and_others_are_kept():
    text = ("WARNING: All log messages before absl::InitializeLog() is called are written to "
            "STDERR\nI0000 port.cc:153] oneDNN custom operations are on.\n"
            "E0000 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)\n"
            "ImportError: libcudnn.so.9: cannot open shared object file\n")
    noise, other = split_startup_output(text)
    assert len(noise) == 3
    assert other == ["ImportError: libcudnn.so.9: cannot open shared object file"]


def _stderr_of(code: str, **env) -> str:
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**environment, **env}, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_tensorflow_imports_without_start_up_lines_and_stays_usable():
    loud = _stderr_of("import tensorflow as tf; tf.config.list_physical_devices()",
                      TF_CPP_MIN_LOG_LEVEL="0")
    if not any(n in loud for n in NOISE):  # nothing to hide: the check below would prove nothing
        pytest.skip("this TensorFlow build prints none of the known start-up lines")
    for code in ("from localsoc.quiet_start import import_tensorflow_quietly as q; q(); "
                 "import tensorflow as tf; print(float(tf.reduce_sum(tf.ones(3))))",
                 "import localsoc.settings, localsoc.pipeline_registry as r; "
                 "r.register_pipelines()"):  # what `kedro run` and the DVC stages load
        quiet = _stderr_of(code)
        assert not [line for line in quiet.splitlines() if any(n in line for n in NOISE)], quiet
    verbose = _stderr_of("from localsoc.quiet_start import import_tensorflow_quietly as q; q(); "
                         "import tensorflow as tf; tf.config.list_physical_devices()",
                         LOCALSOC_VERBOSE="1", TF_CPP_MIN_LOG_LEVEL="0")
    assert any(n in verbose for n in NOISE), verbose


def test_a_localsoc_command_starts_quietly(tmp_path):
    from tests.conftest import make_scratch_project

    project = make_scratch_project(tmp_path / "project")
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-m", "localsoc.command_line", "study", "--site",
                           "nowhere", "--env", "test"], capture_output=True, text=True,
                          env={**environment, "LOCALSOC_PROJECT": str(project)}, timeout=300)
    assert done.returncode != 0 and "no library imported" in done.stderr
    noisy = [line for line in done.stderr.splitlines() if any(n in line for n in NOISE)]
    assert not noisy, done.stderr


def test_bar_redraws_become_a_few_plain_lines():
    import io

    from localsoc.quiet_start import CarriageReturnLines

    out = io.StringIO()
    stream = CarriageReturnLines(out, interval_s=1000)
    for text in ["\r  0%| | 0/3", "\r 33%| | 1/3", "\r100%| | 3/3", "\n", "done\n",
                 "\r  0%| | 0/2", "\r      \r", "a log ", "line\n"]:
        stream.write(text)
    # the first state, the last (ended by the bar's line end); a cleared bar leaves nothing
    assert out.getvalue() == "  0%| | 0/3\n100%| | 3/3\ndone\na log line\n"


def test_a_piped_progress_bar_prints_plain_lines():
    """Under a pipe, tqdm (imported after the call) prints lines, not carriage returns."""
    code = ("import sys, time\n"
            "from localsoc.quiet_start import plain_progress_when_piped\n"
            "plain_progress_when_piped()\n"
            "from tqdm.auto import tqdm\n"
            "for _ in tqdm(range(4), desc='trials', mininterval=0):\n"
            "    time.sleep(0.01)\n"
            "with tqdm(total=2, desc='cleared', leave=False) as bar:\n"
            "    bar.update(2)\n"
            "print('after', file=sys.stderr)\n")
    stderr = _stderr_of(code)
    assert "\r" not in stderr
    lines = stderr.splitlines()
    trials = [line for line in lines if line.startswith("trials")]
    assert len(trials) == 2 and "0/4" in trials[0] and "4/4" in trials[-1]  # first, last
    assert lines[-1] == "after" and all(line.strip() for line in lines)


def test_library_info_is_left_out_and_localsoc_info_and_warnings_stay():
    import logging

    from localsoc.quiet_start import LibraryInfoFilter

    def record(name, level):
        return logging.LogRecord(name, level, __file__, 1, "message", None, None)

    keep = LibraryInfoFilter().filter
    assert not keep(record("great_expectations.data_context.types.base", logging.INFO))
    assert keep(record("great_expectations", logging.WARNING))
    assert keep(record("localsoc.pipelines.train.nodes", logging.INFO))
    assert not keep(record("localsocx", logging.INFO))


def test_a_piped_console_keeps_every_line_within_200_characters():
    """What `make run 2>&1 | cat > log` gets: a progress bar redrawn 68 times (a line of about
    9,000 characters once), a stage banner and a long Kedro log record (its rich handler) come
    out as plain lines of at most 200 characters."""
    code = ("import logging, sys\n"
            "from localsoc.quiet_start import plain_progress_when_piped\n"
            "plain_progress_when_piped()\n"
            "from kedro.logging import RichHandler\n"
            "from rich.console import Console\n"
            "from tqdm.auto import tqdm\n"
            "Console(stderr=True).rule('[bold]stage 5/13: train_sites')\n"
            "logging.basicConfig(handlers=[RichHandler()], level=logging.INFO)\n"
            "logging.getLogger('localsoc.x').warning('long ' * 100)\n"
            "for _ in tqdm(range(68), desc='CNN search (bayesian, 5-fold)', mininterval=0,\n"
            "              postfix={'best_cv_rmse': 0.3184, 's_per_trial': 19.2}):\n"
            "    pass\n")
    environment = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    done = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=environment, timeout=300)
    console = done.stdout  # stdout and stderr together, as `2>&1` gives them
    assert done.returncode == 0, console
    lines = console.splitlines()
    assert "\r" not in console and any("68/68" in line for line in lines), console
    assert any("stage 5/13" in line for line in lines) and console.count("long") == 100
    assert max(len(line) for line in lines) <= 200, max(lines, key=len)


def test_absl_handler_never_closes_the_stream_it_found(monkeypatch):
    """Kedro's logging set-up (dictConfig) closes every handler; absl's must not close the
    stderr it found at import when a caller (CliRunner) has swapped sys.stderr since."""
    python_handler = absl_logging.get_absl_handler().python_handler
    first, swapped = io.StringIO(), io.StringIO()
    monkeypatch.setattr(python_handler, "stream", first)  # absl imported while stderr was `first`
    monkeypatch.setattr(sys, "stderr", first)
    keep_absl_stream_open()
    monkeypatch.setattr(sys, "stderr", swapped)  # a command run in-process
    absl_logging.get_absl_handler().python_handler.stream.write("to the current stderr\n")
    python_handler.close()  # what dictConfig's shutdown of every handler does to it
    assert not first.closed
    assert swapped.getvalue() == "to the current stderr\n"
