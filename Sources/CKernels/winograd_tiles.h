// The per-tile Winograd transforms, written once on a clang vector type and included by
// winograd.c once per width: 8 floats (one channel block, one AVX register in the AVX2 build)
// and 16 floats (two channel blocks, one AVX-512 register). The includer defines
//   VEC         the vector type, VW floats wide (VW = 8 or 16);
//   SUF         the suffix of the names defined here;
//   LOADV(p, plane)  VW floats: the 8 lanes at p of each of VW / 8 consecutive channel blocks,
//                    `plane` floats apart;
// and every operation here works lane by lane, so both widths compute each lane alike.
#define PC_CAT_(a, b) a##b
#define PC_CAT(a, b) PC_CAT_(a, b)
#define NAME(f) PC_CAT(f, SUF)

// r = B^T x: alpha inputs, alpha outputs.
PC_INLINE void NAME(apply_bt)(int kind, int alpha, const float *bt, const VEC *x, VEC *r) {
    if (kind == F4x3) {
        const VEC e1 = x[4] - 4 * x[2], o1 = x[3] - 4 * x[1], e2 = x[4] - x[2], o2 = 2 * (x[3] - x[1]);
        r[0] = 4 * x[0] - 5 * x[2] + x[4];
        r[1] = e1 + o1; r[2] = e1 - o1;
        r[3] = e2 + o2; r[4] = e2 - o2;
        r[5] = 4 * x[1] - 5 * x[3] + x[5];
    } else if (kind == F4x5) {
        const VEC e1 = x[2] - 4.25f * x[4] + x[6], o1 = x[1] - 4.25f * x[3] + x[5];
        const VEC e2 = 0.25f * x[2] - 1.25f * x[4] + x[6], o2 = 0.5f * x[1] - 2.5f * x[3] + 2 * x[5];
        const VEC e3 = 4 * x[2] - 5 * x[4] + x[6], o3 = 2 * x[1] - 2.5f * x[3] + 0.5f * x[5];
        r[0] = x[6] - x[0] + 5.25f * (x[2] - x[4]);
        r[1] = e1 + o1; r[2] = e1 - o1;
        r[3] = e2 + o2; r[4] = e2 - o2;
        r[5] = e3 + o3; r[6] = e3 - o3;
        r[7] = x[7] - x[1] + 5.25f * (x[3] - x[5]);
    } else {
        for (int i = 0; i < alpha; i++) {
            VEC acc = {0};
            for (int k = 0; k < alpha; k++) acc += bt[i * alpha + k] * x[k];
            r[i] = acc;
        }
    }
}

// y = A^T s: alpha inputs, m outputs.
PC_INLINE void NAME(apply_at)(int kind, int m, int alpha, const float *at, const VEC *s, VEC *y) {
    if (kind == F4x3) {
        const VEC a = s[1] + s[2], b = s[1] - s[2], c = s[3] + s[4], d = s[3] - s[4];
        y[0] = s[0] + a + c; y[1] = b + 2 * d; y[2] = a + 4 * c; y[3] = b + 8 * d + s[5];
    } else if (kind == F4x5) {
        const VEC a1 = s[1] + s[2], b1 = s[1] - s[2], a2 = s[3] + s[4], b2 = s[3] - s[4];
        const VEC a3 = s[5] + s[6], b3 = s[5] - s[6];
        y[0] = s[0] + a1 + a2 + a3;
        y[1] = b1 + 2 * b2 + 0.5f * b3;
        y[2] = a1 + 4 * a2 + 0.25f * a3;
        y[3] = b1 + 8 * b2 + 0.125f * b3 + s[7];
    } else {
        for (int p = 0; p < m; p++) {
            VEC acc = {0};
            for (int k = 0; k < alpha; k++) acc += at[p * alpha + k] * s[k];
            y[p] = acc;
        }
    }
}

// s = A g: m inputs, alpha outputs (the transpose of apply_at), for the weight gradient's
// output-gradient tiles.
PC_INLINE void NAME(apply_a)(int kind, int m, int alpha, const float *at, const VEC *g, VEC *s) {
    if (kind == F4x3 || kind == F4x5) {
        const VEC e1 = g[0] + g[2], o1 = g[1] + g[3], e2 = g[0] + 4 * g[2], o2 = 2 * g[1] + 8 * g[3];
        s[0] = g[0];
        s[1] = e1 + o1; s[2] = e1 - o1;
        s[3] = e2 + o2; s[4] = e2 - o2;
        if (kind == F4x3) {
            s[5] = g[3];
        } else {
            const VEC e3 = g[0] + 0.25f * g[2], o3 = 0.5f * g[1] + 0.125f * g[3];
            s[5] = e3 + o3; s[6] = e3 - o3;
            s[7] = g[3];
        }
    } else {
        for (int i = 0; i < alpha; i++) {
            VEC acc = {0};
            for (int p = 0; p < m; p++) acc += at[p * alpha + i] * g[p];
            s[i] = acc;
        }
    }
}

// One tile of VW / 8 channel blocks: the matrix down each column of the patch at `src`, then
// across each row of the result, stored to dst + xi * xiStride (VW contiguous floats each).
// `gradient` picks V = B^T d B of an alpha x alpha input patch (matrix B^T) or dP = A dY A^T of
// an m x m output-gradient tile (matrix A^T).
PC_INLINE void NAME(transform_tile)(int gradient, int kind, int m, int alpha, const float *matrix, const float *src,
                                    long plane, long row, float *dst, long xiStride) {
    const int side = gradient ? m : alpha;
    VEC t[MAX_ALPHA][MAX_ALPHA];
    for (int c = 0; c < side; c++) {
        VEC column[MAX_ALPHA], r[MAX_ALPHA];
        for (int k = 0; k < side; k++) column[k] = LOADV(src + k * row + c * L, plane);
        if (gradient) NAME(apply_a)(kind, m, alpha, matrix, column, r); else NAME(apply_bt)(kind, alpha, matrix, column, r);
        for (int q = 0; q < alpha; q++) t[q][c] = r[q];
    }
    for (int q = 0; q < alpha; q++) {
        VEC r[MAX_ALPHA];
        if (gradient) NAME(apply_a)(kind, m, alpha, matrix, t[q], r); else NAME(apply_bt)(kind, alpha, matrix, t[q], r);
        for (int c = 0; c < alpha; c++) *(VEC_U *)(dst + (q * alpha + c) * xiStride) = r[c];
    }
}

// One output tile of VW channels: y[p][q][lane] = (A^T M A)[p][q] + bias[lane] for p < rows,
// q < m, from M[xi] at src + xi * xiStride (VW contiguous floats each).
PC_INLINE void NAME(output_tile)(int kind, int m, int alpha, const float *at, const float *src, long xiStride,
                                 VEC bias, int rows, float y[MAX_ALPHA][MAX_ALPHA][VW]) {
    VEC t[MAX_ALPHA][MAX_ALPHA];
    for (int c = 0; c < alpha; c++) {
        VEC column[MAX_ALPHA], out[MAX_ALPHA];
        for (int k = 0; k < alpha; k++) column[k] = *(const VEC_U *)(src + (k * alpha + c) * xiStride);
        NAME(apply_at)(kind, m, alpha, at, column, out);
        for (int p = 0; p < m; p++) t[p][c] = out[p];
    }
    for (int p = 0; p < rows; p++) {
        VEC out[MAX_ALPHA];
        NAME(apply_at)(kind, m, alpha, at, t[p], out);
        for (int q = 0; q < m; q++) *(VEC_U *)y[p][q] = out[q] + bias;
    }
}

#undef NAME
