# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# distutils: extra_compile_args = -ffp-contract=off
"""Kennard-Stone selection loop (classic max-min variant), compiled.

Python (``localsoc.selection.kennard_stone``) validates the input, finds the farthest pair and
allocates the outputs; this kernel fills them. Memory is O(N): one running vector of squared
distances from every sample to its nearest selected sample.

Squared Euclidean distances are computed with a fixed arithmetic that the NumPy twin
(``localsoc.selection._reference.exact_squared_distances``) reproduces bit for bit: feature f
is accumulated into accumulator ``f % 4`` in increasing f (``acc = acc + d * d``), and the result
is ``(acc0 + acc1) + (acc2 + acc3)``. ``-ffp-contract=off`` keeps the compiler from fusing the
multiply and add, so native and NumPy selections agree even on exact ties.
"""

from cython.parallel cimport prange


cdef inline double _squared_distance(const double* a, const double* b, Py_ssize_t p) noexcept nogil:
    cdef double acc0 = 0.0, acc1 = 0.0, acc2 = 0.0, acc3 = 0.0
    cdef double d0, d1, d2, d3
    cdef Py_ssize_t f
    cdef Py_ssize_t p4 = p - p % 4
    for f in range(0, p4, 4):
        d0 = a[f] - b[f]
        d1 = a[f + 1] - b[f + 1]
        d2 = a[f + 2] - b[f + 2]
        d3 = a[f + 3] - b[f + 3]
        acc0 = acc0 + d0 * d0
        acc1 = acc1 + d1 * d1
        acc2 = acc2 + d2 * d2
        acc3 = acc3 + d3 * d3
    if p - p4 > 0:
        d0 = a[p4] - b[p4]
        acc0 = acc0 + d0 * d0
    if p - p4 > 1:
        d1 = a[p4 + 1] - b[p4 + 1]
        acc1 = acc1 + d1 * d1
    if p - p4 > 2:
        d2 = a[p4 + 2] - b[p4 + 2]
        acc2 = acc2 + d2 * d2
    return (acc0 + acc1) + (acc2 + acc3)


def squared_distances_to(const double[:, ::1] X, Py_ssize_t row, double[::1] out, int n_threads=1):
    """out[i] = squared distance between X[i] and X[row] (the fixed arithmetic above)."""
    cdef Py_ssize_t n = X.shape[0], p = X.shape[1], i
    cdef const double* base = &X[0, 0]
    cdef const double* x = base + row * p
    with nogil:
        for i in prange(n, num_threads=n_threads, schedule="static"):
            out[i] = _squared_distance(base + i * p, x, p)


def select(
    const double[:, ::1] X,
    Py_ssize_t first,
    Py_ssize_t second,
    Py_ssize_t[::1] selected,
    double[::1] selected_squared,
    double[::1] min_squared,
    int n_threads=1,
):
    """Fill ``selected`` (length n_select) with the Kennard-Stone order starting from a pair.

    selected_squared[s]: squared distance of the s-th pick to its nearest earlier pick
    (entry 0 holds the pair distance too). min_squared (length N) is scratch: the running
    squared distance of every sample to its nearest selected sample, -1 for selected samples.
    Ties go to the lowest index (strict ``>`` in a forward scan).
    """
    cdef Py_ssize_t n = X.shape[0], p = X.shape[1]
    cdef Py_ssize_t n_select = selected.shape[0]
    cdef Py_ssize_t i, s, best
    cdef double value, best_value, d
    cdef const double* base = &X[0, 0]
    cdef const double* x_first = base + first * p
    cdef const double* x_second = base + second * p
    cdef const double* x_new

    with nogil:
        for i in prange(n, num_threads=n_threads, schedule="static"):
            value = _squared_distance(base + i * p, x_first, p)
            d = _squared_distance(base + i * p, x_second, p)
            min_squared[i] = d if d < value else value
        selected[0] = first
        selected[1] = second
        selected_squared[0] = _squared_distance(x_first, x_second, p)
        selected_squared[1] = selected_squared[0]
        min_squared[first] = -1.0
        min_squared[second] = -1.0

        for s in range(2, n_select):
            best = -1
            best_value = -1.0
            for i in range(n):
                if min_squared[i] > best_value:
                    best_value = min_squared[i]
                    best = i
            selected[s] = best
            selected_squared[s] = best_value
            min_squared[best] = -1.0
            if s + 1 == n_select:
                break
            x_new = base + best * p
            for i in prange(n, num_threads=n_threads, schedule="static"):
                if min_squared[i] >= 0.0:
                    d = _squared_distance(base + i * p, x_new, p)
                    if d < min_squared[i]:
                        min_squared[i] = d
