"""The compiled Cython kernels (built from native/*.pyx by `pip install -e .`)."""
