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

#include "targets.h"
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

// The per-tile transforms at 8 lanes (one channel block), for every build.
#define VEC v8
#define VEC_U v8u
#define VW 8
#define SUF _v8
#define LOADV(p, plane) load8(p)
#include "winograd_tiles.h"
#undef VEC
#undef VEC_U
#undef VW
#undef SUF
#undef LOADV

#if defined(__x86_64__)
// And at 16 lanes (two channel blocks), for the AVX-512 build.
typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4)));
PC_INLINE v16 load_pair(const float *p, long plane) {
    return __builtin_shufflevector(load8(p), load8(p + plane), 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}
#define VEC v16
#define VEC_U v16u
#define VW 16
#define SUF _v16
#define LOADV(p, plane) load_pair(p, plane)
#include "winograd_tiles.h"
#undef VEC
#undef VEC_U
#undef VW
#undef SUF
#undef LOADV
#endif

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
                                   float *out, long xiStride, long ldo, int wide) {
    const int kind = kind_of(m, alpha);
    const long plane = (long)paddedHeight * paddedWidth * L, row = (long)paddedWidth * L;
    for (int i = 0; i < count; i++) {
        const int tile = first + i, y0 = (tile / tilesX) * m, x0 = (tile % tilesX) * m;
        const float *src = packed + ((long)y0 * paddedWidth + x0) * L;
        float *dst = out + (long)i * ldo;
        int b = 0;
#if defined(__x86_64__)
        if (wide)
            for (; b + 2 <= blocks; b += 2)
                transform_tile_v16(gradient, kind, m, alpha, matrix, src + b * plane, plane, row, dst + b * L, xiStride);
#endif
        for (; b < blocks; b++)
            transform_tile_v8(gradient, kind, m, alpha, matrix, src + b * plane, plane, row, dst + b * L, xiStride);
    }
}

// tile_transform_body with the two tile sizes Percept uses as constants, so the compiler
// unrolls the transforms' loops and keeps them in registers; other sizes run the general code.
PC_INLINE void tile_transform_sized(int gradient, const float *packed, int blocks, int paddedHeight, int paddedWidth,
                                    int m, int alpha, const float *matrix, int tilesX, int first, int count,
                                    float *out, long xiStride, long ldo, int wide) {
    if (m == 4 && alpha == 6)
        tile_transform_body(gradient, packed, blocks, paddedHeight, paddedWidth, 4, 6, matrix, tilesX, first, count, out,
                            xiStride, ldo, wide);
    else if (m == 4 && alpha == 8)
        tile_transform_body(gradient, packed, blocks, paddedHeight, paddedWidth, 4, 8, matrix, tilesX, first, count, out,
                            xiStride, ldo, wide);
    else if (m == 2 && alpha == 4)
        tile_transform_body(gradient, packed, blocks, paddedHeight, paddedWidth, 2, 4, matrix, tilesX, first, count, out,
                            xiStride, ldo, wide);
    else
        tile_transform_body(gradient, packed, blocks, paddedHeight, paddedWidth, m, alpha, matrix, tilesX, first, count, out,
                            xiStride, ldo, wide);
}

// Stores y[q * ystride + lane] (q < cols) to dst[lane * planeStride + q] for lane < lanes.
PC_INLINE void store_lanes(const float *y, long ystride, int cols, int lanes, float *dst, long planeStride) {
    for (int l = 0; l < lanes; l++)
        for (int q = 0; q < cols; q++) dst[l * planeStride + q] = y[q * ystride + l];
}

#if defined(__x86_64__)
// store_lanes for four full columns and eight lanes: a 4 x 8 transpose, then one 4-float store
// per lane.
PC_AVX2 static void store_lanes4x8_avx2(const float *y, long ystride, float *dst, long planeStride) {
    const __m256 a = _mm256_loadu_ps(y), b = _mm256_loadu_ps(y + ystride);
    const __m256 c = _mm256_loadu_ps(y + 2 * ystride), d = _mm256_loadu_ps(y + 3 * ystride);
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

// Writes rows p < rows of a tile's outputs y[(p * MAX_ALPHA + q) * ystride + lane] to
// dst[lane * planeStride + p * outWidth + q] (q < cols, lane < lanes <= 8). `vector` (a
// constant at each call) picks the AVX2 transposing store for whole 4-wide tile rows.
PC_INLINE void store_tile(const float *y, long ystride, int m, int rows, int cols, int lanes, float *dst,
                          long planeStride, int outWidth, int vector) {
    for (int p = 0; p < rows; p++) {
        const float *yp = y + p * MAX_ALPHA * ystride;
        float *d = dst + (long)p * outWidth;
#if defined(__x86_64__)
        if (vector && m == 4 && cols == 4 && lanes == L) { store_lanes4x8_avx2(yp, ystride, d, planeStride); continue; }
#endif
        store_lanes(yp, ystride, cols, lanes, d, planeStride);
    }
    (void)m; (void)vector;
}

// out[o][y0 + p][x0 + q] = (A^T M A)[p][q] + bias[o] for the tiles' valid pixels. `vector`
// and `wide` (constants at each call) pick the AVX2 transposing stores and the 16-lane
// transforms of the AVX-512 build.
PC_INLINE void output_transform_body(const float *mtx, long xiStride, long ldm, int outChannels,
                                     int m, int alpha, const float *at, const float *bias,
                                     int tilesX, int first, int count,
                                     float *output, int outHeight, int outWidth, int vector, int wide) {
    const int kind = kind_of(m, alpha);
    const int blocks = (outChannels + L - 1) / L;
    const long planeStride = (long)outHeight * outWidth;
    for (int i = 0; i < count; i++) {
        const int tile = first + i, y0 = (tile / tilesX) * m, x0 = (tile % tilesX) * m;
        const int rows = outHeight - y0 < m ? outHeight - y0 : m, cols = outWidth - x0 < m ? outWidth - x0 : m;
        float *corner = output + (long)y0 * outWidth + x0;
        int b = 0;
#if defined(__x86_64__)
        if (wide)
            for (; b + 2 <= blocks; b += 2) {
                const int lanes = outChannels - b * L < 2 * L ? outChannels - b * L : 2 * L;
                float shift[2 * L] = {0};
                if (bias) for (int l = 0; l < lanes; l++) shift[l] = bias[b * L + l];
                float y[MAX_ALPHA][MAX_ALPHA][2 * L];
                output_tile_v16(kind, m, alpha, at, mtx + (long)i * ldm + b * L, xiStride, *(const v16u *)shift, rows, y);
                store_tile(&y[0][0][0], 2 * L, m, rows, cols, L, corner + (long)b * L * planeStride, planeStride,
                           outWidth, vector);
                store_tile(&y[0][0][L], 2 * L, m, rows, cols, lanes - L, corner + (long)(b + 1) * L * planeStride,
                           planeStride, outWidth, vector);
            }
#endif
        for (; b < blocks; b++) {
            const int lanes = outChannels - b * L < L ? outChannels - b * L : L;
            float shift[L] = {0};
            if (bias) for (int l = 0; l < lanes; l++) shift[l] = bias[b * L + l];
            float y[MAX_ALPHA][MAX_ALPHA][L];
            output_tile_v8(kind, m, alpha, at, mtx + (long)i * ldm + b * L, xiStride, load8(shift), rows, y);
            store_tile(&y[0][0][0], L, m, rows, cols, lanes, corner + (long)b * L * planeStride, planeStride, outWidth,
                       vector);
        }
    }
    (void)wide;
}

// U[xi][c][o] = (G g G^T)[xi] for the input channels first <= c < first + count and every
// output channel o, where kernel (o, c) starts at weight[o * outStride + c * inStride] and its
// r x r taps run in order (in reverse where `flipped`: the adjoint convolution's kernels read
// straight from the forward convolution's weights). U's rows are `ldu` floats long; rows
// outside first ..< first + count and columns o >= outChannels stay as they are.
// Sixteen output channels go at a time, one per lane of clang's 16-float vector (one AVX-512
// register, two AVX2 registers), so each of U's alpha^2 rows gets whole 64-byte lines; the
// last group of fewer channels runs the same sums on partly filled lanes. Input channels go
// outside, so U's rows are written one after another. The sums run in float: the transform's
// rounding (a few float ulps) is far below that of the channel sums the products then make.
typedef float w16 __attribute__((vector_size(64)));
typedef float w16u __attribute__((vector_size(64), aligned(4)));
enum { WL = 16 };

// The first `lanes` of a vector from p[l * stride] (the rest zero), and back: one vector load or
// store where all sixteen lanes are contiguous.
PC_INLINE w16 load_w16(const float *p, long stride, int lanes) {
    w16 v;
    if (lanes == WL) {
        if (stride == 1) return *(const w16u *)p;
        for (int l = 0; l < WL; l++) v[l] = p[l * stride];
        return v;
    }
    v = (w16){0};
    for (int l = 0; l < lanes; l++) v[l] = p[l * stride];
    return v;
}

PC_INLINE void store_w16(float *p, long stride, int lanes, w16 v) {
    if (lanes == WL && stride == 1) { *(w16u *)p = v; return; }
    for (int l = 0; l < lanes; l++) p[l * stride] = v[l];
}

PC_INLINE void weight_transform_body(const float *weight, long outStride, long inStride, int flipped, int outChannels,
                                     int first, int count, int r, int alpha, const float *g, float *u, long xiStride,
                                     long ldu) {
    const long taps = (long)r * r;
    for (int c = first; c < first + count; c++)
        for (int o = 0; o < outChannels; o += WL) {
            const int lanes = outChannels - o < WL ? outChannels - o : WL;
            w16 w[MAX_ALPHA * MAX_ALPHA];  // the channels' r x r kernels, lane by lane
            const float *src = weight + o * outStride + c * inStride;
            for (long k = 0; k < taps; k++) w[k] = load_w16(src + (flipped ? taps - 1 - k : k), outStride, lanes);
            w16 t[MAX_ALPHA][MAX_ALPHA];  // G w: alpha x r
            for (int i = 0; i < alpha; i++)
                for (int j = 0; j < r; j++) {
                    w16 acc = g[i * r] * w[j];
                    for (int k = 1; k < r; k++) acc += g[i * r + k] * w[k * r + j];
                    t[i][j] = acc;
                }
            for (int i = 0; i < alpha; i++)
                for (int j = 0; j < alpha; j++) {
                    w16 acc = t[i][0] * g[j * r];
                    for (int k = 1; k < r; k++) acc += t[i][k] * g[j * r + k];
                    store_w16(u + (i * alpha + j) * xiStride + (long)c * ldu + o, 1, lanes, acc);
                }
        }
}

#ifdef PC_HAVE_X86
// The vector builds, with the kernel sizes Percept uses as constants.
#define PC_WEIGHT_TRANSFORM_BUILD(name)                                                                       \
    static void name(const float *weight, long outStride, long inStride, int flipped, int outChannels,        \
                     int first, int count, int r, int alpha, const float *g, float *u, long xiStride, long ldu) { \
        if (r == 3 && alpha == 6) weight_transform_body(weight, outStride, inStride, flipped, outChannels, first, count, 3, 6, g, u, xiStride, ldu); \
        else if (r == 5 && alpha == 8) weight_transform_body(weight, outStride, inStride, flipped, outChannels, first, count, 5, 8, g, u, xiStride, ldu); \
        else if (r == 3 && alpha == 4) weight_transform_body(weight, outStride, inStride, flipped, outChannels, first, count, 3, 4, g, u, xiStride, ldu); \
        else weight_transform_body(weight, outStride, inStride, flipped, outChannels, first, count, r, alpha, g, u, xiStride, ldu);           \
    }
PC_AVX2 PC_WEIGHT_TRANSFORM_BUILD(weight_transform_avx2)
PC_AVX512 PC_WEIGHT_TRANSFORM_BUILD(weight_transform_avx512)
#undef PC_WEIGHT_TRANSFORM_BUILD
#endif

#ifdef PC_HAVE_X86
// The AVX2 and AVX-512 builds. As in tile_transform_sized, the tile sizes Percept uses get
// their own copies with m and alpha known; other sizes run the general code. The AVX-512
// builds run the same lane operations on two channel blocks at a time.
#define PC_TILE_TRANSFORM_BUILD(name, wide)                                                               \
    static void name(int gradient, const float *packed, int blocks, int paddedHeight, int paddedWidth, int m, \
                     int alpha, const float *matrix, int tilesX, int first, int count, float *out,            \
                     long xiStride, long ldo) {                                                               \
        if (gradient)                                                                                         \
            tile_transform_sized(1, packed, blocks, paddedHeight, paddedWidth, m, alpha, matrix, tilesX, first,\
                                 count, out, xiStride, ldo, wide);                                            \
        else                                                                                                  \
            tile_transform_sized(0, packed, blocks, paddedHeight, paddedWidth, m, alpha, matrix, tilesX, first,\
                                 count, out, xiStride, ldo, wide);                                            \
    }
PC_AVX2 PC_TILE_TRANSFORM_BUILD(tile_transform_avx2, 0)
PC_AVX512 PC_TILE_TRANSFORM_BUILD(tile_transform_avx512, 1)
#undef PC_TILE_TRANSFORM_BUILD

#define PC_OUTPUT_TRANSFORM_BUILD(name, wide)                                                             \
    static void name(const float *mtx, long xiStride, long ldm, int outChannels, int m, int alpha,          \
                     const float *at, const float *bias, int tilesX, int first, int count, float *output,     \
                     int outHeight, int outWidth) {                                                           \
        if (m == 4 && alpha == 6)                                                                             \
            output_transform_body(mtx, xiStride, ldm, outChannels, 4, 6, at, bias, tilesX, first, count,      \
                                  output, outHeight, outWidth, 1, wide);                                      \
        else if (m == 4 && alpha == 8)                                                                        \
            output_transform_body(mtx, xiStride, ldm, outChannels, 4, 8, at, bias, tilesX, first, count,      \
                                  output, outHeight, outWidth, 1, wide);                                      \
        else if (m == 2 && alpha == 4)                                                                        \
            output_transform_body(mtx, xiStride, ldm, outChannels, 2, 4, at, bias, tilesX, first, count,      \
                                  output, outHeight, outWidth, 1, wide);                                      \
        else                                                                                                  \
            output_transform_body(mtx, xiStride, ldm, outChannels, m, alpha, at, bias, tilesX, first, count,  \
                                  output, outHeight, outWidth, 1, wide);                                      \
    }
PC_AVX2 PC_OUTPUT_TRANSFORM_BUILD(output_transform_avx2, 0)
PC_AVX512 PC_OUTPUT_TRANSFORM_BUILD(output_transform_avx512, 1)
#undef PC_OUTPUT_TRANSFORM_BUILD
#endif

static void output_transform_portable(const float *mtx, long xiStride, long ldm, int outChannels, int m, int alpha,
                                      const float *at, const float *bias, int tilesX, int first, int count,
                                      float *output, int outHeight, int outWidth) {
    output_transform_body(mtx, xiStride, ldm, outChannels, m, alpha, at, bias, tilesX, first, count, output,
                          outHeight, outWidth, 0, 0);
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

// products_tile at AVX-512: up to 8 rows of a by 32 columns of b (two 16-float vectors, the
// columns past `width` masked off), sixteen sums in registers. Each sum takes the same
// multiply-adds in the same order as in the AVX2 kernel, so the results are the same.
PC_AVX512 PC_INLINE void products_tile16(int rows, int two, const float *a, long lda, const float *b, long ldb,
                               float *c, long ldc, int depth, __mmask16 mask0, __mmask16 mask1) {
    __m512 acc[8][2];
    for (int r = 0; r < rows; r++) { acc[r][0] = _mm512_setzero_ps(); acc[r][1] = _mm512_setzero_ps(); }
    for (int k = 0; k < depth; k++) {
        const __m512 b0 = _mm512_maskz_loadu_ps(mask0, b + k * ldb);
        const __m512 b1 = two ? _mm512_maskz_loadu_ps(mask1, b + k * ldb + 16) : _mm512_setzero_ps();
        for (int r = 0; r < rows; r++) {
            const __m512 x = _mm512_set1_ps(a[r * lda + k]);
            acc[r][0] = _mm512_fmadd_ps(x, b0, acc[r][0]);
            if (two) acc[r][1] = _mm512_fmadd_ps(x, b1, acc[r][1]);
        }
    }
    for (int r = 0; r < rows; r++) {
        _mm512_mask_storeu_ps(c + r * ldc, mask0, acc[r][0]);
        if (two) _mm512_mask_storeu_ps(c + r * ldc + 16, mask1, acc[r][1]);
    }
}

#define PC_TILE16_CASES(two)                                                                        \
    switch (rows) {                                                                                 \
    case 8: products_tile16(8, two, a0, lda, b0, ldb, c0, ldc, depth, mask0, mask1); break;         \
    case 7: products_tile16(7, two, a0, lda, b0, ldb, c0, ldc, depth, mask0, mask1); break;         \
    case 6: products_tile16(6, two, a0, lda, b0, ldb, c0, ldc, depth, mask0, mask1); break;         \
    case 5: products_tile16(5, two, a0, lda, b0, ldb, c0, ldc, depth, mask0, mask1); break;         \
    case 4: products_tile16(4, two, a0, lda, b0, ldb, c0, ldc, depth, mask0, mask1); break;         \
    case 3: products_tile16(3, two, a0, lda, b0, ldb, c0, ldc, depth, mask0, mask1); break;         \
    case 2: products_tile16(2, two, a0, lda, b0, ldb, c0, ldc, depth, mask0, mask1); break;         \
    default: products_tile16(1, two, a0, lda, b0, ldb, c0, ldc, depth, mask0, mask1); break;        \
    }

PC_AVX512 static void products_avx512(const float *a, long lda, const float *b, long ldb, float *c, long ldc,
                                      int count, int depth, int width) {
    for (int o = 0; o < width; o += 32) {
        const int left = width - o;
        const __mmask16 mask0 = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
        const __mmask16 mask1 = left >= 32 ? 0xFFFF : left > 16 ? (__mmask16)((1u << (left - 16)) - 1) : 0;
        for (int t = 0; t < count; t += 8) {
            const int rows = count - t < 8 ? count - t : 8;
            const float *a0 = a + t * lda, *b0 = b + o;
            float *c0 = c + t * ldc + o;
            if (mask1) { PC_TILE16_CASES(1) } else { PC_TILE16_CASES(0) }
        }
    }
}
#undef PC_TILE16_CASES
#endif

int pc_winograd_products(const float *v, long vStride, long ldv, const float *u, long uStride, long ldu,
                         float *mtx, long mStride, long ldm, int matrices, int count, int depth, int width) {
#ifdef PC_HAVE_X86
    if (pc_kernels_use_avx512()) {
        for (int xi = 0; xi < matrices; xi++)
            products_avx512(v + xi * vStride, ldv, u + xi * uStride, ldu, mtx + xi * mStride, ldm, count, depth, width);
        return 1;
    }
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

#ifdef PC_HAVE_X86
// 8 x 8 transpose: rows r[0..7] (8 channels' runs of 8 pixels) become 8 pixels' channel vectors.
PC_AVX2 static void transpose8_avx2(__m256 r[8]) {
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20); r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20); r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31); r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31); r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// pack_input_body for whole blocks of 8 channels: eight channel rows at a time, 8 x 8
// transposes, and zeros written only where the padding is; a last partial block goes through
// the scalar body.
PC_AVX2 static void pack_input_avx2(const float *input, int channels, int height, int width, int padTop, int padLeft,
                                    int paddedHeight, int paddedWidth, float *packed) {
    const int whole = channels / L;
    const long plane = (long)paddedHeight * paddedWidth * L, rowLength = (long)paddedWidth * L;
    // Input columns [x0, x1) land inside the padded row.
    const int x0 = padLeft < 0 ? -padLeft : 0;
    const int x1 = width < paddedWidth - padLeft ? width : paddedWidth - padLeft;
    for (int b = 0; b < whole; b++) {
        const float *src = input + (long)b * L * height * width;
        float *dst = packed + b * plane;
        for (int py = 0; py < paddedHeight; py++) {
            float *row = dst + py * rowLength;
            const int y = py - padTop;
            if (y < 0 || y >= height || x1 <= x0) { memset(row, 0, sizeof(float) * rowLength); continue; }
            const int left = x0 + padLeft, right = x1 + padLeft;  // padded columns [left, right) hold data
            memset(row, 0, sizeof(float) * L * left);
            memset(row + (long)right * L, 0, sizeof(float) * L * (paddedWidth - right));
            const float *in = src + (long)y * width;
            int x = x0;
            for (; x + 8 <= x1; x += 8) {
                __m256 r[8];
                for (int c = 0; c < L; c++) r[c] = _mm256_loadu_ps(in + (long)c * height * width + x);
                transpose8_avx2(r);
                float *out = row + (long)(x + padLeft) * L;
                for (int k = 0; k < 8; k++) _mm256_storeu_ps(out + k * L, r[k]);
            }
            for (; x < x1; x++)
                for (int c = 0; c < L; c++) row[(long)(x + padLeft) * L + c] = in[(long)c * height * width + x];
        }
    }
    if (whole * L < channels)
        pack_input_body(input + (long)whole * L * height * width, channels - whole * L, height, width, padTop, padLeft,
                        paddedHeight, paddedWidth, packed + whole * plane);
}
#endif

void pc_winograd_pack_input(const float *input, int channels, int height, int width, int padTop, int padLeft,
                            int paddedHeight, int paddedWidth, float *packed) {
#ifdef PC_HAVE_X86
    if (pc_kernels_use_avx2()) {
        pack_input_avx2(input, channels, height, width, padTop, padLeft, paddedHeight, paddedWidth, packed);
        return;
    }
#endif
    pack_input_body(input, channels, height, width, padTop, padLeft, paddedHeight, paddedWidth, packed);
}

// The best build of tile_transform_body for this CPU.
static void tile_transform(int gradient, const float *packed, int blocks, int paddedHeight, int paddedWidth, int m,
                           int alpha, const float *matrix, int tilesX, int first, int count, float *out, long xiStride,
                           long ldo) {
#ifdef PC_HAVE_X86
    if (pc_kernels_use_avx512()) {
        tile_transform_avx512(gradient, packed, blocks, paddedHeight, paddedWidth, m, alpha, matrix, tilesX, first, count,
                              out, xiStride, ldo);
        return;
    }
    if (pc_kernels_use_avx2()) {
        tile_transform_avx2(gradient, packed, blocks, paddedHeight, paddedWidth, m, alpha, matrix, tilesX, first, count, out,
                            xiStride, ldo);
        return;
    }
#endif
    tile_transform_body(gradient, packed, blocks, paddedHeight, paddedWidth, m, alpha, matrix, tilesX, first, count, out,
                        xiStride, ldo, 0);
}

void pc_winograd_input_transform(const float *packed, int blocks, int paddedHeight, int paddedWidth, int m, int alpha,
                                 const float *bt, int tilesX, int first, int count, float *v, long xiStride, long ldv) {
    tile_transform(0, packed, blocks, paddedHeight, paddedWidth, m, alpha, bt, tilesX, first, count, v, xiStride, ldv);
}

void pc_winograd_output_transform(const float *mtx, long xiStride, long ldm, int outChannels, int m, int alpha,
                                  const float *at, const float *bias, int tilesX, int first, int count,
                                  float *output, int outHeight, int outWidth) {
#ifdef PC_HAVE_X86
    if (pc_kernels_use_avx512()) {
        output_transform_avx512(mtx, xiStride, ldm, outChannels, m, alpha, at, bias, tilesX, first, count, output,
                                outHeight, outWidth);
        return;
    }
    if (pc_kernels_use_avx2()) {
        output_transform_avx2(mtx, xiStride, ldm, outChannels, m, alpha, at, bias, tilesX, first, count, output,
                              outHeight, outWidth);
        return;
    }
#endif
    output_transform_portable(mtx, xiStride, ldm, outChannels, m, alpha, at, bias, tilesX, first, count, output,
                              outHeight, outWidth);
}

void pc_winograd_weight_transform(const float *weight, long outStride, long inStride, int flipped, int outChannels,
                                  int first, int count, int r, int alpha, const float *g, float *u, long xiStride,
                                  long ldu) {
#ifdef PC_HAVE_X86
    if (pc_kernels_use_avx512()) {
        weight_transform_avx512(weight, outStride, inStride, flipped, outChannels, first, count, r, alpha, g, u, xiStride,
                                ldu);
        return;
    }
    if (pc_kernels_use_avx2()) {
        weight_transform_avx2(weight, outStride, inStride, flipped, outChannels, first, count, r, alpha, g, u, xiStride,
                              ldu);
        return;
    }
#endif
    weight_transform_body(weight, outStride, inStride, flipped, outChannels, first, count, r, alpha, g, u, xiStride, ldu);
}

void pc_winograd_gradient_transform(const float *packed, int blocks, int paddedHeight, int paddedWidth, int m, int alpha,
                                    const float *at, int tilesX, int first, int count, float *dp, long xiStride, long ldp) {
    tile_transform(1, packed, blocks, paddedHeight, paddedWidth, m, alpha, at, tilesX, first, count, dp, xiStride, ldp);
}

// gradient[o][c] = G^T dU[.][c][o] G: the transpose of weight_transform_body, sixteen output
// channels to the lanes of a vector in the same way, in float.
PC_INLINE void weight_gradient_transform_body(const float *du, long xiStride, long ldu, int outChannels, int inChannels,
                                              int first, int count, int r, int alpha, const float *g, float *gradient) {
    const long taps = (long)r * r;
    for (int c = first; c < first + count; c++)
        for (int o = 0; o < outChannels; o += WL) {
            const int lanes = outChannels - o < WL ? outChannels - o : WL;
            w16 d[MAX_ALPHA * MAX_ALPHA];
            for (int xi = 0; xi < alpha * alpha; xi++) d[xi] = load_w16(du + xi * xiStride + (long)c * ldu + o, 1, lanes);
            w16 t[MAX_ALPHA][MAX_ALPHA];  // G^T dU: r x alpha
            for (int k = 0; k < r; k++)
                for (int j = 0; j < alpha; j++) {
                    w16 acc = g[k] * d[j];
                    for (int i = 1; i < alpha; i++) acc += g[i * r + k] * d[i * alpha + j];
                    t[k][j] = acc;
                }
            for (int k = 0; k < r; k++)
                for (int l = 0; l < r; l++) {
                    w16 acc = t[k][0] * g[l];
                    for (int j = 1; j < alpha; j++) acc += t[k][j] * g[j * r + l];
                    store_w16(gradient + ((long)o * inChannels + c) * taps + k * r + l, (long)inChannels * taps, lanes, acc);
                }
        }
}

#ifdef PC_HAVE_X86
#define PC_WEIGHT_GRADIENT_BUILD(name)                                                                        \
    static void name(const float *du, long xiStride, long ldu, int outChannels, int inChannels, int first,     \
                     int count, int r, int alpha, const float *g, float *gradient) {                            \
        if (r == 3 && alpha == 6)                                                                               \
            weight_gradient_transform_body(du, xiStride, ldu, outChannels, inChannels, first, count, 3, 6, g, gradient);      \
        else if (r == 5 && alpha == 8)                                                                          \
            weight_gradient_transform_body(du, xiStride, ldu, outChannels, inChannels, first, count, 5, 8, g, gradient);      \
        else if (r == 3 && alpha == 4)                                                                          \
            weight_gradient_transform_body(du, xiStride, ldu, outChannels, inChannels, first, count, 3, 4, g, gradient);      \
        else                                                                                                    \
            weight_gradient_transform_body(du, xiStride, ldu, outChannels, inChannels, first, count, r, alpha, g, gradient);  \
    }
PC_AVX2 PC_WEIGHT_GRADIENT_BUILD(weight_gradient_transform_avx2)
PC_AVX512 PC_WEIGHT_GRADIENT_BUILD(weight_gradient_transform_avx512)
#undef PC_WEIGHT_GRADIENT_BUILD
#endif

void pc_winograd_weight_gradient_transform(const float *du, long xiStride, long ldu, int outChannels, int inChannels,
                                           int first, int count, int r, int alpha, const float *g, float *gradient) {
#ifdef PC_HAVE_X86
    if (pc_kernels_use_avx512()) {
        weight_gradient_transform_avx512(du, xiStride, ldu, outChannels, inChannels, first, count, r, alpha, g, gradient);
        return;
    }
    if (pc_kernels_use_avx2()) {
        weight_gradient_transform_avx2(du, xiStride, ldu, outChannels, inChannels, first, count, r, alpha, g, gradient);
        return;
    }
#endif
    weight_gradient_transform_body(du, xiStride, ldu, outChannels, inChannels, first, count, r, alpha, g, gradient);
}
