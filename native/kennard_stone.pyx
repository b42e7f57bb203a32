# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# distutils: extra_compile_args = -ffp-contract=off
"""Kennard-Stone selection loop (classic max-min variant), compiled.

Python (``localsoc.selection.kennard_stone``) validates the input, finds the farthest pair and
allocates the outputs; this kernel fills them. Memory is O(N): one running vector of squared
distances from every sample to its nearest selected sample.

Squared Euclidean distances use a fixed arithmetic that the NumPy twin
(``localsoc.selection._reference``) reproduces bit for bit, so both break exact ties alike.
With d_f = a_f - b_f, n16 = p - p % 16:

    acc[j] = sum over f = j, j + 16, ... < n16 of d_f * d_f      (left to right, j = 0..15)
    tail   = sum over f = n16 .. p - 1 of d_f * d_f              (left to right)
    s8[j]  = acc[j] + acc[j + 8];  s4[j] = s8[j] + s8[j + 4]
    result = ((s4[0] + s4[2]) + (s4[1] + s4[3])) + tail

``-ffp-contract=off`` keeps the compiler from fusing a multiply and an add, so every build (SSE2
or the AVX2 clone that x86-64 Linux picks at load time) gives the same bits.
"""

from cython.parallel cimport prange
from libc.math cimport sqrt


cdef extern from *:
    """
    #include <math.h>
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
    #define KS_CLONES __attribute__((target_clones("default", "arch=x86-64-v3")))
    #else
    #define KS_CLONES
    #endif

    static inline double ks_squared_distance_inline(const double *a, const double *b,
                                                    Py_ssize_t p) {
        double acc[16], tail = 0.0, d;
        Py_ssize_t f, j, n16 = p - p % 16;
        for (j = 0; j < 16; j++) acc[j] = 0.0;
        for (f = 0; f < n16; f += 16) {
            for (j = 0; j < 16; j++) {
                d = a[f + j] - b[f + j];
                acc[j] = acc[j] + d * d;
            }
        }
        for (f = n16; f < p; f++) {
            d = a[f] - b[f];
            tail = tail + d * d;
        }
        for (j = 0; j < 8; j++) acc[j] = acc[j] + acc[j + 8];
        for (j = 0; j < 4; j++) acc[j] = acc[j] + acc[j + 4];
        return ((acc[0] + acc[2]) + (acc[1] + acc[3])) + tail;
    }

    KS_CLONES static double ks_squared_distance(const double *a, const double *b, Py_ssize_t p) {
        return ks_squared_distance_inline(a, b, p);
    }

    /* out[i] = squared distance of row i to x, rows start..stop-1 */
    KS_CLONES static void ks_distances(const double *X, Py_ssize_t p, Py_ssize_t start,
                                       Py_ssize_t stop, const double *x, double *out) {
        Py_ssize_t i;
        for (i = start; i < stop; i++) out[i] = ks_squared_distance_inline(X + i * p, x, p);
    }

    /* min_squared[i] = min(min_squared[i], distance to x) for unselected rows (value >= 0) */
    KS_CLONES static void ks_update(const double *X, Py_ssize_t p, Py_ssize_t start,
                                    Py_ssize_t stop, const double *x, double *min_squared) {
        Py_ssize_t i;
        double d;
        for (i = start; i < stop; i++) {
            if (min_squared[i] >= 0.0) {
                d = ks_squared_distance_inline(X + i * p, x, p);
                if (d < min_squared[i]) min_squared[i] = d;
            }
        }
    }

    /* The same update, skipping rows that cannot move: with D0, D1 the distances of row i and of
       the new pick x to the first two picks, |D0_i - D0_x| and |D1_i - D1_x| are lower bounds on
       the distance from row i to x (triangle inequality). A row whose bound, less a margin far
       above the rounding of D0/D1, already reaches its current nearest distance is not read:
       its exact distance could not be smaller, so the result is the same bit for bit. */
    KS_CLONES static void ks_update_pruned(const double *X, Py_ssize_t p, Py_ssize_t start,
                                           Py_ssize_t stop, const double *x, double *min_squared,
                                           const double *pivot0, const double *pivot1,
                                           double new0, double new1, double margin) {
        Py_ssize_t i;
        double d, m, bound, other;
        for (i = start; i < stop; i++) {
            m = min_squared[i];
            if (m < 0.0) continue;
            bound = fabs(pivot0[i] - new0);
            other = fabs(pivot1[i] - new1);
            if (other > bound) bound = other;
            bound = bound - margin;
            if (bound > 0.0 && bound * bound >= m * (1.0 + 1e-9)) continue;
            d = ks_squared_distance_inline(X + i * p, x, p);
            if (d < m) min_squared[i] = d;
        }
    }
    """
    double ks_squared_distance(const double* a, const double* b, Py_ssize_t p) noexcept nogil
    void ks_update_pruned(const double* X, Py_ssize_t p, Py_ssize_t start, Py_ssize_t stop,
                          const double* x, double* min_squared, const double* pivot0,
                          const double* pivot1, double new0, double new1,
                          double margin) noexcept nogil
    void ks_distances(const double* X, Py_ssize_t p, Py_ssize_t start, Py_ssize_t stop,
                      const double* x, double* out) noexcept nogil
    void ks_update(const double* X, Py_ssize_t p, Py_ssize_t start, Py_ssize_t stop,
                   const double* x, double* min_squared) noexcept nogil


cdef Py_ssize_t CHUNK = 256  # rows per parallel work item


def squared_distances_to(const double[:, ::1] X, Py_ssize_t row, double[::1] out, int n_threads=1):
    """out[i] = squared distance between X[i] and X[row] (the fixed arithmetic above)."""
    cdef Py_ssize_t n = X.shape[0], p = X.shape[1], c
    cdef Py_ssize_t n_chunks = (n + CHUNK - 1) // CHUNK
    cdef const double* base = &X[0, 0]
    cdef double* target = &out[0]
    with nogil:
        for c in prange(n_chunks, num_threads=n_threads, schedule="static"):
            ks_distances(base, p, c * CHUNK, min(n, (c + 1) * CHUNK), base + row * p, target)


cdef double _start_pivots(double* running, double* pivot0, double* pivot1,
                          Py_ssize_t n) noexcept nogil:
    # From the squared distances to the first two picks: each row's running squared distance
    # (the nearer pick), the pivots as distances; returns the largest pivot distance.
    cdef Py_ssize_t i
    cdef double largest = 0.0
    for i in range(n):
        running[i] = pivot1[i] if pivot1[i] < pivot0[i] else pivot0[i]
        pivot0[i] = sqrt(pivot0[i])
        pivot1[i] = sqrt(pivot1[i])
        if pivot0[i] > largest:
            largest = pivot0[i]
        if pivot1[i] > largest:
            largest = pivot1[i]
    return largest


cdef Py_ssize_t _farthest(const double* running, Py_ssize_t n, double* value) noexcept nogil:
    # The row with the largest running squared distance (its value in value[0]); ties to the
    # lowest index (strict > in a forward scan); -1 when every row is selected.
    cdef Py_ssize_t i, best = -1
    cdef double best_value = -1.0
    for i in range(n):
        if running[i] > best_value:
            best_value = running[i]
            best = i
    value[0] = best_value
    return best


def select(
    const double[:, ::1] X,
    Py_ssize_t first,
    Py_ssize_t second,
    Py_ssize_t[::1] selected,
    double[::1] selected_squared,
    double[::1] min_squared,
    double[:, ::1] pivots,
    int n_threads=1,
):
    """Fill ``selected`` (length n_select) with the Kennard-Stone order starting from a pair.

    selected_squared[s]: squared distance of the s-th pick to its nearest earlier pick
    (entry 0 holds the pair distance too). Scratch: min_squared (N), the running squared
    distance of every sample to its nearest selected sample (-1 once selected); pivots (2, N),
    the distances to the first two picks (they let rows that cannot change be skipped).
    Ties go to the lowest index (strict ``>`` in a forward scan).
    """
    cdef Py_ssize_t n = X.shape[0], p = X.shape[1]
    cdef Py_ssize_t n_select = selected.shape[0]
    cdef Py_ssize_t n_chunks = (n + CHUNK - 1) // CHUNK
    cdef Py_ssize_t i, s, c, best
    cdef double best_value, margin = 0.0
    cdef const double* base = &X[0, 0]
    cdef double* running = &min_squared[0]
    cdef double* pivot0 = &pivots[0, 0]
    cdef double* pivot1 = &pivots[1, 0]

    with nogil:
        for c in prange(n_chunks, num_threads=n_threads, schedule="static"):
            ks_distances(base, p, c * CHUNK, min(n, (c + 1) * CHUNK), base + first * p, pivot0)
            ks_distances(base, p, c * CHUNK, min(n, (c + 1) * CHUNK), base + second * p, pivot1)
        margin = 1e-9 * _start_pivots(running, pivot0, pivot1, n)  # >> rounding (~p * eps)
        selected[0] = first
        selected[1] = second
        selected_squared[0] = ks_squared_distance(base + first * p, base + second * p, p)
        selected_squared[1] = selected_squared[0]
        running[first] = -1.0
        running[second] = -1.0

        for s in range(2, n_select):
            best = _farthest(running, n, &best_value)
            selected[s] = best
            selected_squared[s] = best_value
            running[best] = -1.0
            if s + 1 == n_select:
                break
            for c in prange(n_chunks, num_threads=n_threads, schedule="static"):
                ks_update_pruned(
                    base, p, c * CHUNK, min(n, (c + 1) * CHUNK), base + best * p, running,
                    pivot0, pivot1, pivot0[best], pivot1[best], margin,
                )
