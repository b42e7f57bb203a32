"""Import at OSSL size: a wide CSV of 64,000 spectra x 1,076 bands through `localsoc import`.

The file (about 1.2 GB) is generated here, seeded, and never committed: OSSL v1.0 column naming
(``id.layer_uuid_c``, ``oc_usda.calc_wpct``, ``scan_visnir.<nm>_pcnt``), percent reflectance
350-2500 nm every 2 nm, values written to 13 decimals as a float64 export gives them, smooth
spectra (a brightness that falls with carbon, a rising continuum, the water and clay absorption
features near 1,415, 1,915 and 2,205 nm, instrument noise), 2 % of the rows without carbon. It
is written once to ``--workdir`` and reused while the same ``--rows`` are asked for.

Each import runs `localsoc import` as a child process in a scratch project (a copy of this
project's pyproject.toml and conf/, `dvc init --no-scm` unless ``--no-dvc``) with the project's
grid, and prints its wall time, CPU seconds (user + system, the child and what it waits for:
`dvc add`), peak RSS (``os.wait4``: the largest of the child and its children), the rows
imported, the file's size, and the load average (1 min) before and after. ``--second`` imports
the same file again (the import reads the file every time; DVC's cache already holds the
table). ``--malformed`` writes a copy of the file with one bad row (``text``: a reflectance
cell reading ``#VALUE!``, a spreadsheet's error; ``short``: a row missing its last field) at
``--bad-row`` and prints the import's message and the time it took to refuse the file.

Prints figures, asserts nothing about speed.

Usage: python bench/ossl_import.py [--rows 64000] [--workdir /tmp/localsoc_ossl] [--second]
       [--malformed text|short] [--bad-row 51234] [--no-dvc] [--regenerate]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import print_header, row  # noqa: E402
from bench.study_seeds import scratch  # noqa: E402

WAVELENGTHS_NM = np.arange(350, 2501, 2)
ID_COLUMN = "id.layer_uuid_c"
CARBON_COLUMN = "oc_usda.calc_wpct"
#: (centre nm, width nm, depth in percent reflectance at the mean): water at 1,415 and
#: 1,915 nm, clay (Al-OH) at 2,205 nm.
FEATURES = ((1415.0, 30.0, 6.0), (1915.0, 40.0, 10.0), (2205.0, 25.0, 4.0))
CHUNK_ROWS = 2_000
DECIMALS = 13


def spectra_chunk(rng: np.random.Generator, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` spectra in percent reflectance on WAVELENGTHS_NM and their carbon (%, NaN for
    the 2 % without a lab value)."""
    soc = rng.lognormal(np.log(1.5), 0.8, rows)
    brightness = 55.0 * np.exp(-0.12 * soc) * rng.uniform(0.7, 1.2, rows)
    continuum = 0.45 + 0.55 * (1.0 - np.exp(-(WAVELENGTHS_NM - 350.0) / 450.0))
    tilt = rng.normal(0.0, 0.05, (rows, 1)) * (WAVELENGTHS_NM - 1425.0) / 1075.0
    spectra = brightness[:, None] * (continuum + tilt)
    for centre, width, depth in FEATURES:
        shape = np.exp(-0.5 * ((WAVELENGTHS_NM - centre) / width) ** 2)
        spectra -= (depth * rng.uniform(0.3, 1.5, (rows, 1))) * shape
    spectra += rng.normal(0.0, 0.05, spectra.shape)
    soc[rng.random(rows) < 0.02] = np.nan
    return np.round(np.clip(spectra, 0.5, 95.0), DECIMALS), np.round(soc, 3)


def generate(path: Path, rows: int, seed: int = 0) -> float:
    """Write the wide CSV (in chunks of CHUNK_ROWS rows, with pyarrow's CSV writer); seconds."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    names = [ID_COLUMN, CARBON_COLUMN, *(f"scan_visnir.{w}_pcnt" for w in WAVELENGTHS_NM)]
    partial = path.with_name(path.name + ".partial")
    schema = pa.schema([(ID_COLUMN, pa.string())]
                       + [(name, pa.float64()) for name in names[1:]])
    with pacsv.CSVWriter(partial, schema) as writer:
        for first in range(0, rows, CHUNK_ROWS):
            count = min(CHUNK_ROWS, rows - first)
            spectra, soc = spectra_chunk(rng, count)
            ids = [f"{(first + i) * 2654435761 % 2**32:08x}-{first + i:06d}" for i in range(count)]
            columns = [pa.array(ids), pa.array(soc, from_pandas=True),
                       *(spectra[:, j] for j in range(spectra.shape[1]))]
            writer.write_table(pa.Table.from_arrays(columns, schema=schema))
    os.replace(partial, path)
    return time.perf_counter() - start


def malformed_copy(path: Path, kind: str, bad_row: int) -> Path:
    """A copy of ``path`` whose data row ``bad_row`` (counted from 0) has a reflectance cell
    reading ``n/a`` (``text``) or lacks its last field (``short``)."""
    target = path.with_name(f"{path.stem}_{kind}.csv")
    with open(path, "rb") as source, open(target, "wb") as out:
        out.write(source.readline())
        for index, line in enumerate(source):
            if index == bad_row:
                cells = line.rstrip(b"\n").split(b",")
                if kind == "text":
                    cells[500] = b"#VALUE!"
                else:
                    cells = cells[:-1]
                line = b",".join(cells) + b"\n"
            out.write(line)
    return target


def run_import(project: Path, source: Path, name: str, no_dvc: bool) -> dict:
    """`localsoc import` of ``source`` as a child process: wall, CPU, peak RSS, exit status,
    output, load average before and after."""
    command = [sys.executable, "-m", "localsoc.command_line", "import", str(source),
               "--library", name, "--carbon-column", CARBON_COLUMN, "--carbon-kind", "organic",
               "--id-column", ID_COLUMN, *(["--no-dvc"] if no_dvc else [])]
    load_before = os.getloadavg()[0]
    log = project / f"{name}.log"
    start = time.perf_counter()
    with open(log, "wb") as output:
        child = subprocess.Popen(command, cwd=project, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "user_s": usage.ru_utime, "sys_s": usage.ru_stime,
            "peak_rss_gib": usage.ru_maxrss / 2**20, "status": os.waitstatus_to_exitcode(status),
            "output": log.read_text(errors="replace"), "load_before": load_before,
            "load_after": os.getloadavg()[0]}


def print_run(label: str, result: dict) -> None:
    imported = re.search(r": (\d+) rows from", result["output"])
    row(f"{label}: wall", f"{result['wall_s']:.1f} s")
    row(f"{label}: CPU (user + sys)",
        f"{result['cpu_s']:.1f} s ({result['user_s']:.1f} + {result['sys_s']:.1f})")
    row(f"{label}: peak RSS", f"{result['peak_rss_gib']:.2f} GiB")
    row(f"{label}: load average (1 min) before / after",
        f"{result['load_before']:.2f} / {result['load_after']:.2f}")
    row(f"{label}: exit status; rows imported",
        f"{result['status']}; {imported.group(1) if imported else 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=64_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/localsoc_ossl"))
    parser.add_argument("--second", action="store_true", help="import the same file again")
    parser.add_argument("--malformed", choices=("text", "short"), default=None,
                        help="also import a copy with one bad row")
    parser.add_argument("--bad-row", type=int, default=51_234)
    parser.add_argument("--no-dvc", action="store_true", help="import with --no-dvc")
    parser.add_argument("--regenerate", action="store_true")
    args = parser.parse_args()
    print_header(f"OSSL-size import: {args.rows:,} spectra x {WAVELENGTHS_NM.size} bands")
    args.workdir.mkdir(parents=True, exist_ok=True)
    source = args.workdir / f"ossl_visnir_{args.rows}.csv"
    if args.regenerate or not source.exists():
        row("generated the file in", f"{generate(source, args.rows):.1f} s")
    row("file", f"{source} ({source.stat().st_size / 1e9:.2f} GB)")
    project = scratch(args.workdir / "project")
    if not args.no_dvc:
        subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=project,
                       check=True)
    first = run_import(project, source, "ossl", args.no_dvc)
    print_run("import", first)
    if first["status"]:
        print(first["output"][-2000:])
    if args.second:
        print_run("second import of the same file", run_import(project, source, "ossl",
                                                               args.no_dvc))
    if args.malformed:
        bad = malformed_copy(source, args.malformed, args.bad_row)
        result = run_import(project, bad, "ossl_bad", True)
        print_run(f"malformed ({args.malformed}, row {args.bad_row})", result)
        print("  message:")
        print("    " + result["output"].strip().replace("\n", "\n    "))
        bad.unlink()
    shutil.rmtree(project)


if __name__ == "__main__":
    main()
