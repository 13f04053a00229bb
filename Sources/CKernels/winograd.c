// Winograd minimal filtering F(m x m, r x r) for stride-1 convolutions (Lavin & Gray, "Fast
// Algorithms for Convolutional Neural Networks", 2016).
//
// Each alpha x alpha input tile d (alpha = m + r - 1) becomes V = B^T d B, each kernel g becomes
// U = G g G^T, and the m x m output tile is Y = A^T [sum over input channels of U (.) V] A. The
// channel sums are alpha^2 independent matrix products (one per tile position xi): a register-
// tiled AVX2 kernel here, sgemm (called from Swift) without AVX2. Channels travel in blocks of
// eight, one SIMD lane each: the packed input is [channel block][row][column][8], so every
// transform is a run of 8-wide multiply-adds.
//
// The transforms are written once on clang's 8-float vector type and compiled twice: with
// AVX2 + FMA (one vector instruction each) and portably.
#include "CKernels.h"
#include <string.h>

enum { L = 8, MAX_ALPHA = 8 };

#if defined(__x86_64__)
#define PC_AVX2 __attribute__((target("avx2,fma")))
#define PC_HAVE_X86 1
#endif
#define PC_INLINE static inline __attribute__((always_inline))

// Eight floats, one per channel lane: clang's vector extension, one AVX register in the AVX2
// build and two SSE registers (or scalars) elsewhere.
// The helpers below are always inlined, so no v8 ever crosses a call: the ABI warning that a
// 32-byte vector argument gets without AVX does not apply.
#pragma clang diagnostic ignored "-Wpsabi"
typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4)));
PC_INLINE v8 load8(const float *p) { return *(const v8u *)p; }
PC_INLINE void store8(float *p, v8 x) { *(v8u *)p = x; }
PC_INLINE v8 splat(float s) { return (v8){s, s, s, s, s, s, s, s}; }

// Which 1-D transforms run: the matrices' coefficients in general, or the two tile sizes
// Percept uses written out, sharing the sums and differences of the +-p point pairs (the
// coefficients are those WinogradTransform computes for the points 0, +-1, +-2, +-1/2, inf).
enum { GENERAL = 0, F4x3 = 6, F4x5 = 8 };

PC_INLINE int kind_of(int m, int alpha) {
    return m == 4 && alpha == 6 ? F4x3 : m == 4 && alpha == 8 ? F4x5 : GENERAL;
}

// r = B^T x: alpha inputs, alpha outputs.
PC_INLINE void apply_bt(int kind, int alpha, const float *bt, const v8 *x, v8 *r) {
    if (kind == F4x3) {
        const v8 e1 = x[4] - 4 * x[2], o1 = x[3] - 4 * x[1], e2 = x[4] - x[2], o2 = 2 * (x[3] - x[1]);
        r[0] = 4 * x[0] - 5 * x[2] + x[4];
        r[1] = e1 + o1; r[2] = e1 - o1;
        r[3] = e2 + o2; r[4] = e2 - o2;
        r[5] = 4 * x[1] - 5 * x[3] + x[5];
    } else if (kind == F4x5) {
        const v8 e1 = x[2] - 4.25f * x[4] + x[6], o1 = x[1] - 4.25f * x[3] + x[5];
        const v8 e2 = 0.25f * x[2] - 1.25f * x[4] + x[6], o2 = 0.5f * x[1] - 2.5f * x[3] + 2 * x[5];
        const v8 e3 = 4 * x[2] - 5 * x[4] + x[6], o3 = 2 * x[1] - 2.5f * x[3] + 0.5f * x[5];
        r[0] = x[6] - x[0] + 5.25f * (x[2] - x[4]);
        r[1] = e1 + o1; r[2] = e1 - o1;
        r[3] = e2 + o2; r[4] = e2 - o2;
        r[5] = e3 + o3; r[6] = e3 - o3;
        r[7] = x[7] - x[1] + 5.25f * (x[3] - x[5]);
    } else {
        for (int i = 0; i < alpha; i++) {
            v8 acc = splat(0);
            for (int k = 0; k < alpha; k++) acc += splat(bt[i * alpha + k]) * x[k];
            r[i] = acc;
        }
    }
}

// y = A^T s: alpha inputs, m outputs.
PC_INLINE void apply_at(int kind, int m, int alpha, const float *at, const v8 *s, v8 *y) {
    if (kind == F4x3) {
        const v8 a = s[1] + s[2], b = s[1] - s[2], c = s[3] + s[4], d = s[3] - s[4];
        y[0] = s[0] + a + c; y[1] = b + 2 * d; y[2] = a + 4 * c; y[3] = b + 8 * d + s[5];
    } else if (kind == F4x5) {
        const v8 a1 = s[1] + s[2], b1 = s[1] - s[2], a2 = s[3] + s[4], b2 = s[3] - s[4];
        const v8 a3 = s[5] + s[6], b3 = s[5] - s[6];
        y[0] = s[0] + a1 + a2 + a3;
        y[1] = b1 + 2 * b2 + 0.5f * b3;
        y[2] = a1 + 4 * a2 + 0.25f * a3;
        y[3] = b1 + 8 * b2 + 0.125f * b3 + s[7];
    } else {
        for (int p = 0; p < m; p++) {
            v8 acc = splat(0);
            for (int k = 0; k < alpha; k++) acc += splat(at[p * alpha + k]) * s[k];
            y[p] = acc;
        }
    }
}

// s = A g: m inputs, alpha outputs (the transpose of apply_at), for the weight gradient's
// output-gradient tiles.
PC_INLINE void apply_a(int kind, int m, int alpha, const float *at, const v8 *g, v8 *s) {
    if (kind == F4x3 || kind == F4x5) {
        const v8 e1 = g[0] + g[2], o1 = g[1] + g[3], e2 = g[0] + 4 * g[2], o2 = 2 * g[1] + 8 * g[3];
        s[0] = g[0];
        s[1] = e1 + o1; s[2] = e1 - o1;
        s[3] = e2 + o2; s[4] = e2 - o2;
        if (kind == F4x3) {
            s[5] = g[3];
        } else {
            const v8 e3 = g[0] + 0.25f * g[2], o3 = 0.5f * g[1] + 0.125f * g[3];
            s[5] = e3 + o3; s[6] = e3 - o3;
            s[7] = g[3];
        }
    } else {
        for (int i = 0; i < alpha; i++) {
            v8 acc = splat(0);
            for (int p = 0; p < m; p++) acc += splat(at[p * alpha + i]) * g[p];
            s[i] = acc;
        }
    }
}

PC_INLINE void pack_input_body(const float *input, int channels, int height, int width, int padTop, int padLeft,
                               int paddedHeight, int paddedWidth, float *packed) {
    const int blocks = (channels + L - 1) / L;
    const long plane = (long)paddedHeight * paddedWidth * L;
    memset(packed, 0, sizeof(float) * plane * blocks);
    for (int c = 0; c < channels; c++) {
        float *dst = packed + (c / L) * plane + c % L;
        const float *src = input + (long)c * height * width;
        for (int y = 0; y < height; y++) {
            const int py = y + padTop;
            if (py < 0 || py >= paddedHeight) continue;
            float *row = dst + (long)py * paddedWidth * L;
            for (int x = 0; x < width; x++) {
                const int px = x + padLeft;
                if (px >= 0 && px < paddedWidth) row[(long)px * L] = src[(long)y * width + x];
            }
        }
    }
}

// The two forward tile transforms of the packed planes, for tiles t in [first, first + count)
// (tile t's corner at row (t / tilesX) * m, column (t % tilesX) * m), written to
// out[xi][t][block * 8 + lane]: the matrix down each column of the patch, then across each row of
// the result. `gradient` (a constant at each call) picks which:
// - 0: V = B^T d B of the alpha x alpha input patches (`matrix` is B^T);
// - 1: dP = A dY A^T of the m x m output-gradient tiles, for the weight gradient (`matrix` is A^T).
PC_INLINE void tile_transform_body(int gradient, const float *packed, int blocks, int paddedHeight, int paddedWidth,
                                   int m, int alpha, const float *matrix, int tilesX, int first, int count,
                                   float *out, long xiStride, long ldo) {
    const int kind = kind_of(m, alpha), side = gradient ? m : alpha;
    const long plane = (long)paddedHeight * paddedWidth * L, row = (long)paddedWidth * L;
    for (int i = 0; i < count; i++) {
        const int tile = first + i, y0 = (tile / tilesX) * m, x0 = (tile % tilesX) * m;
        for (int b = 0; b < blocks; b++) {
            const float *src = packed + b * plane + ((long)y0 * paddedWidth + x0) * L;
            v8 t[MAX_ALPHA][MAX_ALPHA];
            for (int c = 0; c < side; c++) {
                v8 column[MAX_ALPHA], r8[MAX_ALPHA];
                for (int k = 0; k < side; k++) column[k] = load8(src + k * row + c * L);
                if (gradient) apply_a(kind, m, alpha, matrix, column, r8); else apply_bt(kind, alpha, matrix, column, r8);
                for (int r = 0; r < alpha; r++) t[r][c] = r8[r];
            }
            float *dst = out + (long)i * ldo + b * L;
            for (int r = 0; r < alpha; r++) {
                v8 r8[MAX_ALPHA];
                if (gradient) apply_a(kind, m, alpha, matrix, t[r], r8); else apply_bt(kind, alpha, matrix, t[r], r8);
                for (int c = 0; c < alpha; c++) store8(dst + (r * alpha + c) * xiStride, r8[c]);
            }
        }
    }
}

// tile_transform_body with the two tile sizes Percept uses as constants, so the compiler
// unrolls the transforms' loops and keeps them in registers; other sizes run the general code.
PC_INLINE void tile_transform_sized(int gradient, const float *packed, int blocks, int paddedHeight, int paddedWidth,
                                    int m, int alpha, const float *matrix, int tilesX, int first, int count,
                                    float *out, long xiStride, long ldo) {
    if (m == 4 && alpha == 6)
        tile_transform_body(gradient, packed, blocks, paddedHeight, paddedWidth, 4, 6, matrix, tilesX, first, count, out, xiStride, ldo);
    else if (m == 4 && alpha == 8)
        tile_transform_body(gradient, packed, blocks, paddedHeight, paddedWidth, 4, 8, matrix, tilesX, first, count, out, xiStride, ldo);
    else
        tile_transform_body(gradient, packed, blocks, paddedHeight, paddedWidth, m, alpha, matrix, tilesX, first, count, out, xiStride, ldo);
}

// Stores y[q][lane] (q < cols) to dst[lane * planeStride + q] for lane < lanes.
PC_INLINE void store_lanes(const float y[][L], int cols, int lanes, float *dst, long planeStride) {
    for (int l = 0; l < lanes; l++)
        for (int q = 0; q < cols; q++) dst[l * planeStride + q] = y[q][l];
}

#if defined(__x86_64__)
#include <immintrin.h>
// store_lanes for four full columns and eight lanes: a 4 x 8 transpose, then one 4-float store
// per lane.
PC_AVX2 static void store_lanes4x8_avx2(const float y[][L], float *dst, long planeStride) {
    const __m256 a = _mm256_loadu_ps(y[0]), b = _mm256_loadu_ps(y[1]);
    const __m256 c = _mm256_loadu_ps(y[2]), d = _mm256_loadu_ps(y[3]);
    const __m256 ab0 = _mm256_unpacklo_ps(a, b), ab1 = _mm256_unpackhi_ps(a, b);
    const __m256 cd0 = _mm256_unpacklo_ps(c, d), cd1 = _mm256_unpackhi_ps(c, d);
    const __m256 l0 = _mm256_shuffle_ps(ab0, cd0, 0x44), l1 = _mm256_shuffle_ps(ab0, cd0, 0xEE);
    const __m256 l2 = _mm256_shuffle_ps(ab1, cd1, 0x44), l3 = _mm256_shuffle_ps(ab1, cd1, 0xEE);
    _mm_storeu_ps(dst, _mm256_castps256_ps128(l0));
    _mm_storeu_ps(dst + planeStride, _mm256_castps256_ps128(l1));
    _mm_storeu_ps(dst + 2 * planeStride, _mm256_castps256_ps128(l2));
    _mm_storeu_ps(dst + 3 * planeStride, _mm256_castps256_ps128(l3));
    _mm_storeu_ps(dst + 4 * planeStride, _mm256_extractf128_ps(l0, 1));
    _mm_storeu_ps(dst + 5 * planeStride, _mm256_extractf128_ps(l1, 1));
    _mm_storeu_ps(dst + 6 * planeStride, _mm256_extractf128_ps(l2, 1));
    _mm_storeu_ps(dst + 7 * planeStride, _mm256_extractf128_ps(l3, 1));
}
#endif

// out[o][y0 + p][x0 + q] = (A^T M A)[p][q] + bias[o] for the tiles' valid pixels. `vector`
// (a constant at each call) picks the AVX2 transposing store for whole 4-wide tile rows.
PC_INLINE void output_transform_body(const float *mtx, long xiStride, long ldm, int outChannels,
                                     int m, int alpha, const float *at, const float *bias,
                                     int tilesX, int first, int count,
                                     float *output, int outHeight, int outWidth, int vector) {
    const int kind = kind_of(m, alpha);
    const int blocks = (outChannels + L - 1) / L;
    const long planeStride = (long)outHeight * outWidth;
    for (int i = 0; i < count; i++) {
        const int tile = first + i, y0 = (tile / tilesX) * m, x0 = (tile % tilesX) * m;
        const int rows = outHeight - y0 < m ? outHeight - y0 : m, cols = outWidth - x0 < m ? outWidth - x0 : m;
        for (int b = 0; b < blocks; b++) {
            const float *src = mtx + (long)i * ldm + b * L;
            v8 t[MAX_ALPHA][MAX_ALPHA];
            for (int c = 0; c < alpha; c++) {
                v8 column[MAX_ALPHA], out[MAX_ALPHA];
                for (int k = 0; k < alpha; k++) column[k] = load8(src + (k * alpha + c) * xiStride);
                apply_at(kind, m, alpha, at, column, out);
                for (int p = 0; p < m; p++) t[p][c] = out[p];
            }
            const int lanes = outChannels - b * L < L ? outChannels - b * L : L;
            float shift[L] = {0};
            if (bias) for (int l = 0; l < lanes; l++) shift[l] = bias[b * L + l];
            const v8 bias8 = load8(shift);
            for (int p = 0; p < rows; p++) {
                v8 out[MAX_ALPHA];
                apply_at(kind, m, alpha, at, t[p], out);
                float y[MAX_ALPHA][L];
                for (int q = 0; q < m; q++) store8(y[q], out[q] + bias8);
                float *dst = output + ((long)b * L * outHeight + y0 + p) * outWidth + x0;
#if defined(__x86_64__)
                if (vector && m == 4 && cols == 4 && lanes == L) { store_lanes4x8_avx2(y, dst, planeStride); continue; }
#endif
                store_lanes(y, cols, lanes, dst, planeStride);
            }
        }
    }
}

// U[xi][c][o] = (G g G^T)[xi] for weights [outChannels][inChannels][r][r]; U's rows are
// `ldu` floats long and rows c >= inChannels, columns o >= outChannels stay as they are.
PC_INLINE void weight_transform_body(const float *weight, int outChannels, int inChannels, int r, int alpha,
                                     const float *g, float *u, long xiStride, long ldu) {
    for (int o = 0; o < outChannels; o++) {
        for (int c = 0; c < inChannels; c++) {
            const float *w = weight + ((long)o * inChannels + c) * r * r;
            double t[MAX_ALPHA][MAX_ALPHA];  // G w: alpha x r
            for (int i = 0; i < alpha; i++)
                for (int j = 0; j < r; j++) {
                    double acc = 0;
                    for (int k = 0; k < r; k++) acc += (double)g[i * r + k] * w[k * r + j];
                    t[i][j] = acc;
                }
            for (int i = 0; i < alpha; i++)
                for (int j = 0; j < alpha; j++) {
                    double acc = 0;
                    for (int k = 0; k < r; k++) acc += t[i][k] * g[j * r + k];
                    u[(i * alpha + j) * xiStride + (long)c * ldu + o] = (float)acc;
                }
        }
    }
}

#ifdef PC_HAVE_X86
// The AVX2 builds. As in tile_transform_sized, the tile sizes Percept uses get their own copies
// with m and alpha known; other sizes run the general code.
PC_AVX2 static void tile_transform_avx2(int gradient, const float *packed, int blocks, int paddedHeight, int paddedWidth,
                                        int m, int alpha, const float *matrix, int tilesX, int first, int count, float *out,
                                        long xiStride, long ldo) {
    if (gradient)
        tile_transform_sized(1, packed, blocks, paddedHeight, paddedWidth, m, alpha, matrix, tilesX, first, count, out, xiStride, ldo);
    else
        tile_transform_sized(0, packed, blocks, paddedHeight, paddedWidth, m, alpha, matrix, tilesX, first, count, out, xiStride, ldo);
}

PC_AVX2 static void output_transform_avx2(const float *mtx, long xiStride, long ldm, int outChannels, int m, int alpha,
                                          const float *at, const float *bias, int tilesX, int first, int count,
                                          float *output, int outHeight, int outWidth) {
    if (m == 4 && alpha == 6)
        output_transform_body(mtx, xiStride, ldm, outChannels, 4, 6, at, bias, tilesX, first, count, output,
                              outHeight, outWidth, 1);
    else if (m == 4 && alpha == 8)
        output_transform_body(mtx, xiStride, ldm, outChannels, 4, 8, at, bias, tilesX, first, count, output,
                              outHeight, outWidth, 1);
    else
        output_transform_body(mtx, xiStride, ldm, outChannels, m, alpha, at, bias, tilesX, first, count, output,
                              outHeight, outWidth, 1);
}
#endif

static void output_transform_portable(const float *mtx, long xiStride, long ldm, int outChannels, int m, int alpha,
                                      const float *at, const float *bias, int tilesX, int first, int count,
                                      float *output, int outHeight, int outWidth) {
    output_transform_body(mtx, xiStride, ldm, outChannels, m, alpha, at, bias, tilesX, first, count, output,
                          outHeight, outWidth, 0);
}

#ifdef PC_HAVE_X86
// c[r][0..8w) = sum over k of a[r][k] * b[k][0..8w) for r < rows: a register tile of up to 6
// rows of a (broadcast) by 16 columns of b (two vectors), twelve sums kept in registers.
PC_INLINE void products_tile(int rows, int w, const float *a, long lda, const float *b, long ldb,
                             float *c, long ldc, int depth) {
    v8 acc[6][2];
    for (int r = 0; r < rows; r++) { acc[r][0] = splat(0); acc[r][1] = splat(0); }
    for (int k = 0; k < depth; k++) {
        const v8 b0 = load8(b + k * ldb), b1 = w == 2 ? load8(b + k * ldb + 8) : splat(0);
        for (int r = 0; r < rows; r++) {
            const v8 x = splat(a[r * lda + k]);
            acc[r][0] += x * b0;
            if (w == 2) acc[r][1] += x * b1;
        }
    }
    for (int r = 0; r < rows; r++) {
        store8(c + r * ldc, acc[r][0]);
        if (w == 2) store8(c + r * ldc + 8, acc[r][1]);
    }
}

#define PC_TILE_CASES(w, a, b, c)                                                                 \
    switch (rows) {                                                                               \
    case 6: products_tile(6, w, a, lda, b, ldb, c, ldc, depth); break;                            \
    case 5: products_tile(5, w, a, lda, b, ldb, c, ldc, depth); break;                            \
    case 4: products_tile(4, w, a, lda, b, ldb, c, ldc, depth); break;                            \
    case 3: products_tile(3, w, a, lda, b, ldb, c, ldc, depth); break;                            \
    case 2: products_tile(2, w, a, lda, b, ldb, c, ldc, depth); break;                            \
    default: products_tile(1, w, a, lda, b, ldb, c, ldc, depth); break;                           \
    }

PC_AVX2 static void products_avx2(const float *a, long lda, const float *b, long ldb, float *c, long ldc,
                                  int count, int depth, int width) {
    for (int o = 0; o < width; o += 16) {
        for (int t = 0; t < count; t += 6) {
            const int rows = count - t < 6 ? count - t : 6;
            if (width - o >= 16) { PC_TILE_CASES(2, a + t * lda, b + o, c + t * ldc + o) }
            else { PC_TILE_CASES(1, a + t * lda, b + o, c + t * ldc + o) }
        }
    }
}
#undef PC_TILE_CASES
#endif

int pc_winograd_products(const float *v, long vStride, long ldv, const float *u, long uStride, long ldu,
                         float *mtx, long mStride, long ldm, int matrices, int count, int depth, int width) {
#ifdef PC_HAVE_X86
    if (pc_kernels_use_avx2()) {
        for (int xi = 0; xi < matrices; xi++)
            products_avx2(v + xi * vStride, ldv, u + xi * uStride, ldu, mtx + xi * mStride, ldm, count, depth, width);
        return 1;
    }
#endif
    (void)v; (void)vStride; (void)ldv; (void)u; (void)uStride; (void)ldu; (void)mtx; (void)mStride; (void)ldm;
    (void)matrices; (void)count; (void)depth; (void)width;
    return 0;
}

void pc_winograd_pack_input(const float *input, int channels, int height, int width, int padTop, int padLeft,
                            int paddedHeight, int paddedWidth, float *packed) {
    pack_input_body(input, channels, height, width, padTop, padLeft, paddedHeight, paddedWidth, packed);
}

// The best build of tile_transform_body for this CPU.
static void tile_transform(int gradient, const float *packed, int blocks, int paddedHeight, int paddedWidth, int m,
                           int alpha, const float *matrix, int tilesX, int first, int count, float *out, long xiStride,
                           long ldo) {
#ifdef PC_HAVE_X86
    if (pc_kernels_use_avx2()) {
        tile_transform_avx2(gradient, packed, blocks, paddedHeight, paddedWidth, m, alpha, matrix, tilesX, first, count, out,
                            xiStride, ldo);
        return;
    }
#endif
    tile_transform_body(gradient, packed, blocks, paddedHeight, paddedWidth, m, alpha, matrix, tilesX, first, count, out,
                        xiStride, ldo);
}

void pc_winograd_input_transform(const float *packed, int blocks, int paddedHeight, int paddedWidth, int m, int alpha,
                                 const float *bt, int tilesX, int first, int count, float *v, long xiStride, long ldv) {
    tile_transform(0, packed, blocks, paddedHeight, paddedWidth, m, alpha, bt, tilesX, first, count, v, xiStride, ldv);
}

void pc_winograd_output_transform(const float *mtx, long xiStride, long ldm, int outChannels, int m, int alpha,
                                  const float *at, const float *bias, int tilesX, int first, int count,
                                  float *output, int outHeight, int outWidth) {
#ifdef PC_HAVE_X86
    if (pc_kernels_use_avx2()) {
        output_transform_avx2(mtx, xiStride, ldm, outChannels, m, alpha, at, bias, tilesX, first, count, output,
                              outHeight, outWidth);
        return;
    }
#endif
    output_transform_portable(mtx, xiStride, ldm, outChannels, m, alpha, at, bias, tilesX, first, count, output,
                              outHeight, outWidth);
}

void pc_winograd_weight_transform(const float *weight, int outChannels, int inChannels, int r, int alpha,
                                  const float *g, float *u, long xiStride, long ldu) {
    weight_transform_body(weight, outChannels, inChannels, r, alpha, g, u, xiStride, ldu);
}

void pc_winograd_gradient_transform(const float *packed, int blocks, int paddedHeight, int paddedWidth, int m, int alpha,
                                    const float *at, int tilesX, int first, int count, float *dp, long xiStride, long ldp) {
    tile_transform(1, packed, blocks, paddedHeight, paddedWidth, m, alpha, at, tilesX, first, count, dp, xiStride, ldp);
}

void pc_winograd_weight_gradient_transform(const float *du, long xiStride, long ldu, int outChannels, int inChannels,
                                           int r, int alpha, const float *g, float *gradient) {
    for (int o = 0; o < outChannels; o++) {
        for (int c = 0; c < inChannels; c++) {
            double t[MAX_ALPHA][MAX_ALPHA];  // G^T dU: r x alpha
            for (int k = 0; k < r; k++)
                for (int j = 0; j < alpha; j++) {
                    double acc = 0;
                    for (int i = 0; i < alpha; i++) acc += (double)g[i * r + k] * du[(i * alpha + j) * xiStride + (long)c * ldu + o];
                    t[k][j] = acc;
                }
            float *w = gradient + ((long)o * inChannels + c) * r * r;
            for (int k = 0; k < r; k++)
                for (int l = 0; l < r; l++) {
                    double acc = 0;
                    for (int j = 0; j < alpha; j++) acc += t[k][j] * g[j * r + l];
                    w[k * r + l] = (float)acc;
                }
        }
    }
}
