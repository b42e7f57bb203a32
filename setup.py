"""Build the Cython kernels under native/ as localsoc._native.* (OpenMP when the compiler has it)."""

import os
import sys

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

openmp = [] if sys.platform == "darwin" or os.environ.get("LOCALSOC_NO_OPENMP") else ["-fopenmp"]
compile_args = ["-O3", *openmp]

extensions = [
    Extension(
        f"localsoc._native.{name}",
        [f"native/{name}.pyx"],
        include_dirs=[np.get_include()],
        extra_compile_args=compile_args,
        extra_link_args=openmp,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    for name in ("kennard_stone", "rslocal")
    if os.path.exists(f"native/{name}.pyx")
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False},
    )
)
