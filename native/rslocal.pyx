# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""RS-LOCAL hot loop, compiled: score a batch of library subsets with PLS1 (NIPALS).

Python (``localsoc.selection.rslocal``) validates dtypes, shapes, contiguity and index bounds,
draws the subsets and allocates ``out``; this kernel fills ``out[s]`` with the score of subset
``s`` (a row of ``subsets``: k library row indices). Subsets are scored in parallel with OpenMP
(``prange``, no GIL, no Python objects); each thread owns one malloc'ed scratch buffer. No BLAS
is called, so there is nothing to cap.

Per subset (X = X_library[rows], y = y_library[rows], both centred, as PLSRegression(scale=False)):
NIPALS PLS1 written without forming the centred or deflated matrix, so rows are read in place:

    xm = mean(X),  ym = mean(y),  yc = y - ym,  r = X^T yc - xm * sum(yc)        (= Xc^T yc)
    for a = 1..A:  w_a = r / ||r||                         stop early if ||r|| <= 1e-10 ||r_1||
                   t_a = X w_a - (xm . w_a) - sum_{j<a} t_j (p_j . w_a)        (= X_a w_a)
                   p_a = (X^T t_a - xm sum(t_a) - sum_{j<a} p_j (t_j . t_a)) / (t_a . t_a)
                   q_a = (t_a . yc) / (t_a . t_a)
                   r  <- r - p_a (t_a . yc)                                     (= X_{a+1}^T yc)
    b = W (P^T W)^{-1} q          (P^T W is upper triangular: back substitution)

"response" score: RMSE over the local samples of y_local - (ym + (x_local - xm) . b).
"reconstruction" score: local scores T_l = (X_local - xm) W (P^T W)^{-1}; residual
E = (X_local - xm) - T_l P^T; score = sqrt(mean(E^2)) over all n x p entries.

Every term that is zero in exact arithmetic (sum(t_a), t_j . t_a, sum(yc)) is still subtracted,
so this matches explicit deflation (the NumPy twin in ``_reference.py``) to rounding error.
The hot loops are small C functions (in the verbatim block below) cloned for AVX2/FMA and SSE2.
The factor pass takes four rows at a time: four dot products share the loads of w (eight
accumulator chains, GNU C vector extensions), then one load and store of X^T t serves four rows.
"""

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.math cimport NAN, sqrt
from libc.stdlib cimport free, malloc

RESPONSE = 0
RECONSTRUCTION = 1


cdef extern from *:
    """
    /* Hot loops of the RS-LOCAL kernel in C, cloned per instruction set: on x86-64 Linux with
       GCC the loader picks an AVX2/FMA build (x86-64-v3) when the CPU has it and a baseline
       SSE2 build otherwise (function multi-versioning; no -march flag, so the module stays
       portable). Elsewhere they are plain C. */
    #if !defined(__GNUC__)
    #error "native/rslocal.pyx needs GCC or Clang (GNU C vector extensions)"
    #endif
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
    #define LS_CLONES __attribute__((target_clones("default", "arch=x86-64-v3")))
    #else
    #define LS_CLONES
    #endif

    #define LS_DEFINE(T, S)                                                                          \\
    static inline T ls_dot_inline_##S(const T *a, const T *b, Py_ssize_t n) {                        \\
        T acc[16], tail = 0;                                                                         \\
        Py_ssize_t i, j, n16 = n - n % 16;                                                           \\
        for (j = 0; j < 16; j++) acc[j] = 0;                                                         \\
        for (i = 0; i < n16; i += 16)                                                                \\
            for (j = 0; j < 16; j++) acc[j] += a[i + j] * b[i + j];                                  \\
        for (i = n16; i < n; i++) tail += a[i] * b[i];                                               \\
        for (j = 0; j < 8; j++) acc[j] += acc[j + 8];                                                \\
        for (j = 0; j < 4; j++) acc[j] += acc[j + 4];                                                \\
        return ((acc[0] + acc[2]) + (acc[1] + acc[3])) + tail;                                       \\
    }                                                                                                \\
    /* Four dot products with one vector w, sharing its loads: GNU vector extensions (32-byte        \\
       vectors; two SSE2 registers in the baseline build, one AVX register in the x86-64-v3 clone),  \\
       two accumulators per row so eight chains are in flight. */                                    \\
    static inline void ls_dot4_inline_##S(const T *r0, const T *r1, const T *r2, const T *r3,        \\
                                          const T *w, Py_ssize_t n, T *out) {                        \\
        typedef T vec __attribute__((vector_size(32), aligned(sizeof(T)), may_alias));               \\
        const Py_ssize_t L = (Py_ssize_t) (32 / sizeof(T));                                          \\
        vec a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, b0 = {0}, b1 = {0}, b2 = {0}, b3 = {0};          \\
        vec u, v;                                                                                    \\
        T t0 = 0, t1 = 0, t2 = 0, t3 = 0, x;                                                         \\
        Py_ssize_t i = 0, j;                                                                         \\
        for (; i + 2 * L <= n; i += 2 * L) {                                                         \\
            u = *(const vec *) (w + i);                                                              \\
            v = *(const vec *) (w + i + L);                                                          \\
            a0 += *(const vec *) (r0 + i) * u; b0 += *(const vec *) (r0 + i + L) * v;                \\
            a1 += *(const vec *) (r1 + i) * u; b1 += *(const vec *) (r1 + i + L) * v;                \\
            a2 += *(const vec *) (r2 + i) * u; b2 += *(const vec *) (r2 + i + L) * v;                \\
            a3 += *(const vec *) (r3 + i) * u; b3 += *(const vec *) (r3 + i + L) * v;                \\
        }                                                                                            \\
        for (; i < n; i++) {                                                                         \\
            x = w[i];                                                                                \\
            t0 += r0[i] * x; t1 += r1[i] * x; t2 += r2[i] * x; t3 += r3[i] * x;                      \\
        }                                                                                            \\
        a0 += b0; a1 += b1; a2 += b2; a3 += b3;                                                      \\
        for (j = 0; j < L; j++) { t0 += a0[j]; t1 += a1[j]; t2 += a2[j]; t3 += a3[j]; }              \\
        out[0] = t0; out[1] = t1; out[2] = t2; out[3] = t3;                                          \\
    }                                                                                                \\
    /* y += t0 r0 + t1 r1 + t2 r2 + t3 r3 (one load and store of y for four rows). */                \\
    static inline void ls_axpy4_inline_##S(const T *t, const T *r0, const T *r1, const T *r2,        \\
                                           const T *r3, T *y, Py_ssize_t n) {                        \\
        typedef T vec __attribute__((vector_size(32), aligned(sizeof(T)), may_alias));               \\
        const Py_ssize_t L = (Py_ssize_t) (32 / sizeof(T));                                          \\
        const vec zero = {0};                                                                        \\
        const vec s0 = zero + t[0], s1 = zero + t[1], s2 = zero + t[2], s3 = zero + t[3];            \\
        Py_ssize_t i = 0;                                                                            \\
        for (; i + L <= n; i += L) {                                                                 \\
            *(vec *) (y + i) += (s0 * *(const vec *) (r0 + i) + s1 * *(const vec *) (r1 + i))        \\
                                + (s2 * *(const vec *) (r2 + i) + s3 * *(const vec *) (r3 + i));     \\
        }                                                                                            \\
        for (; i < n; i++) y[i] += (t[0] * r0[i] + t[1] * r1[i]) + (t[2] * r2[i] + t[3] * r3[i]);    \\
    }                                                                                                \\
    LS_CLONES static T ls_dot_##S(const T *a, const T *b, Py_ssize_t n) {                            \\
        return ls_dot_inline_##S(a, b, n);                                                           \\
    }                                                                                                \\
    LS_CLONES static void ls_axpy_##S(T alpha, const T *x, T *y, Py_ssize_t n) {                     \\
        Py_ssize_t i;                                                                                \\
        for (i = 0; i < n; i++) y[i] += alpha * x[i];                                                \\
    }                                                                                                \\
    /* xm = sum of rows, r = sum of yc[i] * row i (the caller divides and corrects). */              \\
    LS_CLONES static void ls_first_pass_##S(const T *X, Py_ssize_t p, const Py_ssize_t *rows,        \\
                                            Py_ssize_t k, const T *yc, T *xm, T *r) {                \\
        Py_ssize_t i, f;                                                                             \\
        for (f = 0; f < p; f++) { xm[f] = 0; r[f] = 0; }                                             \\
        for (i = 0; i + 4 <= k; i += 4) {                                                            \\
            const T *r0 = X + rows[i] * p, *r1 = X + rows[i + 1] * p;                                \\
            const T *r2 = X + rows[i + 2] * p, *r3 = X + rows[i + 3] * p;                            \\
            T v0 = yc[i], v1 = yc[i + 1], v2 = yc[i + 2], v3 = yc[i + 3];                            \\
            for (f = 0; f < p; f++) {                                                                \\
                xm[f] += (r0[f] + r1[f]) + (r2[f] + r3[f]);                                          \\
                r[f] += (v0 * r0[f] + v1 * r1[f]) + (v2 * r2[f] + v3 * r3[f]);                       \\
            }                                                                                        \\
        }                                                                                            \\
        for (; i < k; i++) {                                                                         \\
            const T *row = X + rows[i] * p;                                                          \\
            T v = yc[i];                                                                             \\
            for (f = 0; f < p; f++) { xm[f] += row[f]; r[f] += v * row[f]; }                         \\
        }                                                                                            \\
    }                                                                                                \\
    /* One NIPALS factor over the rows, four at a time: t_i = row . w - s - sum_j T[j][i] c[j]       \\
       (stored in ta) and praw = sum_i t_i row (= X^T t); each row is read while in cache. */        \\
    LS_CLONES static void ls_factor_pass_##S(const T *X, Py_ssize_t p, const Py_ssize_t *rows,       \\
                                             Py_ssize_t k, const T *w, T s, const T *T_prev,         \\
                                             Py_ssize_t a, const T *c, T *ta, T *praw) {             \\
        Py_ssize_t i, j, f, m;                                                                       \\
        T t[4];                                                                                      \\
        for (f = 0; f < p; f++) praw[f] = 0;                                                         \\
        for (i = 0; i + 4 <= k; i += 4) {                                                            \\
            const T *r0 = X + rows[i] * p, *r1 = X + rows[i + 1] * p;                                \\
            const T *r2 = X + rows[i + 2] * p, *r3 = X + rows[i + 3] * p;                            \\
            ls_dot4_inline_##S(r0, r1, r2, r3, w, p, t);                                             \\
            for (m = 0; m < 4; m++) {                                                                \\
                t[m] -= s;                                                                           \\
                for (j = 0; j < a; j++) t[m] -= T_prev[j * k + i + m] * c[j];                        \\
                ta[i + m] = t[m];                                                                    \\
            }                                                                                        \\
            ls_axpy4_inline_##S(t, r0, r1, r2, r3, praw, p);                                         \\
        }                                                                                            \\
        for (; i < k; i++) {                                                                         \\
            const T *row = X + rows[i] * p;                                                          \\
            T ti = ls_dot_inline_##S(row, w, p) - s;                                                 \\
            for (j = 0; j < a; j++) ti -= T_prev[j * k + i] * c[j];                                  \\
            ta[i] = ti;                                                                              \\
            for (f = 0; f < p; f++) praw[f] += ti * row[f];                                          \\
        }                                                                                            \\
    }

    LS_DEFINE(double, d)
    LS_DEFINE(float, f)
    """
    double ls_dot_d(const double* a, const double* b, Py_ssize_t n) noexcept nogil
    float ls_dot_f(const float* a, const float* b, Py_ssize_t n) noexcept nogil
    void ls_axpy_d(double alpha, const double* x, double* y, Py_ssize_t n) noexcept nogil
    void ls_axpy_f(float alpha, const float* x, float* y, Py_ssize_t n) noexcept nogil
    void ls_first_pass_d(const double* X, Py_ssize_t p, const Py_ssize_t* rows, Py_ssize_t k,
                         const double* yc, double* xm, double* r) noexcept nogil
    void ls_first_pass_f(const float* X, Py_ssize_t p, const Py_ssize_t* rows, Py_ssize_t k,
                         const float* yc, float* xm, float* r) noexcept nogil
    void ls_factor_pass_d(const double* X, Py_ssize_t p, const Py_ssize_t* rows, Py_ssize_t k,
                          const double* w, double s, const double* T_prev, Py_ssize_t a,
                          const double* c, double* ta, double* praw) noexcept nogil
    void ls_factor_pass_f(const float* X, Py_ssize_t p, const Py_ssize_t* rows, Py_ssize_t k,
                          const float* w, float s, const float* T_prev, Py_ssize_t a,
                          const float* c, float* ta, float* praw) noexcept nogil


cdef inline floating _dot(const floating* a, const floating* b, Py_ssize_t n) noexcept nogil:
    if floating is double:
        return ls_dot_d(a, b, n)
    else:
        return ls_dot_f(a, b, n)


cdef inline void _axpy(floating alpha, const floating* x, floating* y, Py_ssize_t n) noexcept nogil:
    if floating is double:
        ls_axpy_d(alpha, x, y, n)
    else:
        ls_axpy_f(alpha, x, y, n)


cdef inline Py_ssize_t _work_size(Py_ssize_t p, Py_ssize_t k, Py_ssize_t n_local, Py_ssize_t A) noexcept nogil:
    # xm, r, praw, coef (4p); W, P (2Ap); T (Ak); yc (k); q, c, z, mw, tl (5A); M (A*A)
    return 4 * p + 2 * A * p + A * k + k + 5 * A + A * A


cdef double _score_one(
    const floating* X,
    Py_ssize_t p,
    const floating* y,
    const floating* X_local,
    const floating* y_local,
    Py_ssize_t n_local,
    const Py_ssize_t* rows,
    Py_ssize_t k,
    Py_ssize_t A,
    int scoring,
    floating* work,
) noexcept nogil:
    # One subset: centre it, fit up to A NIPALS factors, score it on the local samples
    # (scoring 0: response RMSE, 1: reconstruction RMSE). work: _work_size elements.
    cdef floating* xm = work
    cdef floating* r = xm + p
    cdef floating* praw = r + p
    cdef floating* coef = praw + p
    cdef floating* W = coef + p
    cdef floating* P = W + A * p
    cdef floating* T = P + A * p
    cdef floating* yc = T + A * k
    cdef floating* q = yc + k
    cdef floating* c = q + A
    cdef floating* z = c + A
    cdef floating* mw = z + A
    cdef floating* tl = mw + A
    cdef floating* M = tl + A
    cdef floating ym
    cdef Py_ssize_t i, j, n_factors

    ym = _centre(X, p, y, rows, k, xm, r, yc)
    n_factors = _nipals(X, p, rows, k, A, xm, r, yc, W, P, T, q, c, praw)
    # M = P^T W restricted to its upper triangle (row i, column j >= i), row-major n_factors^2.
    for i in range(n_factors):
        for j in range(i, n_factors):
            M[i * n_factors + j] = _dot(P + i * p, W + j * p, p)
    if scoring == 0:
        return _response_rmse(X_local, y_local, n_local, p, ym, xm, W, M, q, n_factors, z, coef)
    return _reconstruction_rmse(X_local, n_local, p, xm, W, P, M, n_factors, mw, tl, praw)


cdef inline floating _centre(
    const floating* X, Py_ssize_t p, const floating* y, const Py_ssize_t* rows, Py_ssize_t k,
    floating* xm, floating* r, floating* yc,
) noexcept nogil:
    # The subset's y mean (returned), centred y (yc), X column means (xm) and X^T yc (r).
    cdef floating ym = 0, sum_yc = 0
    cdef Py_ssize_t i, f
    for i in range(k):
        ym = ym + y[rows[i]]
    ym = ym / k
    for i in range(k):
        yc[i] = y[rows[i]] - ym
        sum_yc = sum_yc + yc[i]
    if floating is double:
        ls_first_pass_d(X, p, rows, k, yc, xm, r)
    else:
        ls_first_pass_f(X, p, rows, k, yc, xm, r)
    for f in range(p):
        xm[f] = xm[f] / k
        r[f] = r[f] - xm[f] * sum_yc
    return ym


cdef inline Py_ssize_t _nipals(
    const floating* X, Py_ssize_t p, const Py_ssize_t* rows, Py_ssize_t k, Py_ssize_t A,
    const floating* xm, floating* r, const floating* yc, floating* W, floating* P, floating* T,
    floating* q, floating* c, floating* praw,
) noexcept nogil:
    # PLS1 NIPALS without a deflated X: weights W, loadings P, scores T, y-loadings q of up to
    # A factors (fewer when the subset's rank runs out); returns the number of factors.
    cdef floating* w
    cdef floating* ta
    cdef floating s, tt, st, ty, nrm, tol
    cdef Py_ssize_t i, j, f, a, n_factors = 0
    tol = <floating> (1e-10 * sqrt(<double> _dot(r, r, p)))
    for a in range(A):
        nrm = <floating> sqrt(<double> _dot(r, r, p))
        if nrm <= tol:
            break
        w = W + a * p
        for f in range(p):
            w[f] = r[f] / nrm
        for j in range(a):
            c[j] = _dot(P + j * p, w, p)
        s = _dot(xm, w, p)
        ta = T + a * k
        if floating is double:
            ls_factor_pass_d(X, p, rows, k, w, s, T, a, c, ta, praw)
        else:
            ls_factor_pass_f(X, p, rows, k, w, s, T, a, c, ta, praw)
        tt = _dot(ta, ta, k)
        if not (tt > 0):
            break
        st = 0
        for i in range(k):
            st = st + ta[i]
        ty = _dot(ta, yc, k)
        _axpy(-st, xm, praw, p)
        for j in range(a):
            _axpy(-_dot(T + j * k, ta, k), P + j * p, praw, p)
        for f in range(p):
            P[a * p + f] = praw[f] / tt
        q[a] = ty / tt
        _axpy(-ty, P + a * p, r, p)
        n_factors = a + 1
    return n_factors


cdef inline double _response_rmse(
    const floating* X_local, const floating* y_local, Py_ssize_t n_local, Py_ssize_t p,
    floating ym, const floating* xm, const floating* W, const floating* M, const floating* q,
    Py_ssize_t n_factors, floating* z, floating* coef,
) noexcept nogil:
    # RMSE of the subset model's predictions of the local y: M z = q by back substitution,
    # coefficients b = W z.
    cdef floating v, e
    cdef double sse = 0.0
    cdef Py_ssize_t i, j, a, f, l
    for i in range(n_factors - 1, -1, -1):
        v = q[i]
        for j in range(i + 1, n_factors):
            v = v - M[i * n_factors + j] * z[j]
        z[i] = v / M[i * n_factors + i]
    for f in range(p):
        coef[f] = 0
    for a in range(n_factors):
        _axpy(z[a], W + a * p, coef, p)
    v = ym - _dot(xm, coef, p)
    for l in range(n_local):
        e = y_local[l] - (v + _dot(X_local + l * p, coef, p))
        sse = sse + <double> e * <double> e
    return sqrt(sse / n_local)


cdef inline double _reconstruction_rmse(
    const floating* X_local, Py_ssize_t n_local, Py_ssize_t p, const floating* xm,
    const floating* W, const floating* P, const floating* M, Py_ssize_t n_factors,
    floating* mw, floating* tl, floating* praw,
) noexcept nogil:
    # RMS residual of the local spectra reconstructed from their scores in the subset's space.
    cdef const floating* xl
    cdef floating v
    cdef double sse = 0.0
    cdef Py_ssize_t i, j, a, f, l
    for a in range(n_factors):
        mw[a] = _dot(xm, W + a * p, p)
    for l in range(n_local):
        xl = X_local + l * p
        # Local scores tl solve tl M = u (u_a = (x_l - xm) . w_a): forward substitution.
        for j in range(n_factors):
            v = _dot(xl, W + j * p, p) - mw[j]
            for i in range(j):
                v = v - tl[i] * M[i * n_factors + j]
            tl[j] = v / M[j * n_factors + j]
        for f in range(p):
            praw[f] = xl[f] - xm[f]
        for a in range(n_factors):
            _axpy(-tl[a], P + a * p, praw, p)
        sse = sse + <double> _dot(praw, praw, p)
    return sqrt(sse / (n_local * p))


def work_size(Py_ssize_t p, Py_ssize_t k, Py_ssize_t n_local, Py_ssize_t n_components):
    """Scratch elements (of the working dtype) one thread allocates."""
    return _work_size(p, k, n_local, n_components)


def score_subsets(
    const floating[:, ::1] X_library,
    const floating[::1] y_library,
    const floating[:, ::1] X_local,
    const floating[::1] y_local,
    const Py_ssize_t[:, ::1] subsets,
    Py_ssize_t n_components,
    int scoring,
    double[::1] out,
    int n_threads=1,
):
    """Fill out[s] with the PLS1 score of subsets[s] (see the module docstring).

    The caller guarantees: shapes agree, 1 <= n_components <= min(k - 1, p), every index is in
    [0, len(X_library)), n_local >= 1. An entry left NaN means a thread could not allocate its
    scratch buffer.
    """
    cdef Py_ssize_t n_subsets = subsets.shape[0]
    cdef Py_ssize_t k = subsets.shape[1]
    cdef Py_ssize_t p = X_library.shape[1]
    cdef Py_ssize_t n_local = X_local.shape[0]
    cdef Py_ssize_t size = _work_size(p, k, n_local, n_components)
    cdef Py_ssize_t s
    cdef floating* work
    cdef const floating* X
    cdef const floating* y
    cdef const floating* Xl
    cdef const floating* yl
    cdef const Py_ssize_t* rows
    if n_subsets == 0:
        return
    X = &X_library[0, 0]
    y = &y_library[0]
    Xl = &X_local[0, 0]
    yl = &y_local[0]
    rows = &subsets[0, 0]
    with nogil, parallel(num_threads=n_threads):
        work = <floating*> malloc(size * sizeof(floating))
        for s in prange(n_subsets, schedule="dynamic", chunksize=4):
            if work == NULL:
                out[s] = NAN
            else:
                out[s] = _score_one(
                    X, p, y, Xl, yl, n_local, rows + s * k, k, n_components, scoring, work
                )
        free(work)
