// Winograd minimal filtering F(m x m, r x r) for stride-1 convolutions (Lavin & Gray, "Fast
// Algorithms for Convolutional Neural Networks", 2016).
//
// Each alpha x alpha input tile d (alpha = m + r - 1) becomes V = B^T d B, each kernel g becomes
// U = G g G^T, and the m x m output tile is Y = A^T [sum over input channels of U (.) V] A. The
// channel sums are alpha^2 independent matrix products (one per tile position xi), which run
// through sgemm; these kernels do the three transforms. Channels travel in blocks of eight,
// one SIMD lane each: the packed input is [channel block][row][column][8], so every transform
// is a run of 8-wide multiply-adds with the matrices' coefficients broadcast.
//
// The kernels are written once, with each 8-lane step as a plain loop, and compiled twice:
// with AVX2 + FMA (the loops become one vector instruction each) and portably.
#include "CKernels.h"
#include <string.h>

enum { L = 8, MAX_ALPHA = 8 };

#if defined(__x86_64__)
#define PC_AVX2 __attribute__((target("avx2,fma")))
#define PC_HAVE_X86 1
#endif
#define PC_INLINE static inline __attribute__((always_inline))

// acc[0..8) += c * x[0..8)
#define AXPY8(acc, c, x) do { for (int l_ = 0; l_ < L; l_++) (acc)[l_] += (c) * (x)[l_]; } while (0)

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

// V[xi][t][block * 8 + lane] = (B^T d B)[xi] for tiles t in [0, count) starting at `first`.
PC_INLINE void input_transform_body(const float *packed, int blocks, int paddedHeight, int paddedWidth,
                                    int m, int alpha, const float *bt, int tilesX, int first, int count,
                                    float *v, long xiStride, long ldv) {
    const long plane = (long)paddedHeight * paddedWidth * L;
    float d[MAX_ALPHA][MAX_ALPHA][L], t[MAX_ALPHA][MAX_ALPHA][L];
    for (int i = 0; i < count; i++) {
        const int tile = first + i, y0 = (tile / tilesX) * m, x0 = (tile % tilesX) * m;
        for (int b = 0; b < blocks; b++) {
            const float *src = packed + b * plane + ((long)y0 * paddedWidth + x0) * L;
            for (int k = 0; k < alpha; k++) memcpy(d[k], src + (long)k * paddedWidth * L, sizeof(float) * L * alpha);
            // t = B^T d
            for (int r = 0; r < alpha; r++) {
                for (int c = 0; c < alpha; c++) memset(t[r][c], 0, sizeof t[r][c]);
                for (int k = 0; k < alpha; k++) {
                    const float s = bt[r * alpha + k];
                    if (s == 0) continue;
                    for (int c = 0; c < alpha; c++) AXPY8(t[r][c], s, d[k][c]);
                }
            }
            // V = t B: V[r][c] = sum over k of t[r][k] * bt[c][k]
            float *out = v + (long)i * ldv + b * L;
            for (int r = 0; r < alpha; r++) {
                for (int c = 0; c < alpha; c++) {
                    float acc[L] = {0};
                    for (int k = 0; k < alpha; k++) {
                        const float s = bt[c * alpha + k];
                        if (s != 0) AXPY8(acc, s, t[r][k]);
                    }
                    memcpy(out + (r * alpha + c) * xiStride, acc, sizeof acc);
                }
            }
        }
    }
}

// out[o][y0 + p][x0 + q] = (A^T M A)[p][q] + bias[o] for the tiles' valid pixels.
PC_INLINE void output_transform_body(const float *mtx, long xiStride, long ldm, int outChannels,
                                     int m, int alpha, const float *at, const float *bias,
                                     int tilesX, int first, int count,
                                     float *output, int outHeight, int outWidth) {
    const int blocks = (outChannels + L - 1) / L;
    float s[MAX_ALPHA][MAX_ALPHA][L], t[MAX_ALPHA][MAX_ALPHA][L];
    for (int i = 0; i < count; i++) {
        const int tile = first + i, y0 = (tile / tilesX) * m, x0 = (tile % tilesX) * m;
        const int rows = outHeight - y0 < m ? outHeight - y0 : m, cols = outWidth - x0 < m ? outWidth - x0 : m;
        for (int b = 0; b < blocks; b++) {
            const float *src = mtx + (long)i * ldm + b * L;
            for (int r = 0; r < alpha; r++)
                for (int c = 0; c < alpha; c++) memcpy(s[r][c], src + (r * alpha + c) * xiStride, sizeof s[r][c]);
            // t = A^T s (m x alpha)
            for (int p = 0; p < m; p++) {
                for (int c = 0; c < alpha; c++) memset(t[p][c], 0, sizeof t[p][c]);
                for (int k = 0; k < alpha; k++) {
                    const float a = at[p * alpha + k];
                    if (a == 0) continue;
                    for (int c = 0; c < alpha; c++) AXPY8(t[p][c], a, s[k][c]);
                }
            }
            const int lanes = outChannels - b * L < L ? outChannels - b * L : L;
            float shift[L] = {0};
            if (bias) for (int l = 0; l < lanes; l++) shift[l] = bias[b * L + l];
            for (int p = 0; p < rows; p++) {
                for (int q = 0; q < cols; q++) {
                    float y[L];
                    memcpy(y, shift, sizeof y);
                    for (int k = 0; k < alpha; k++) {
                        const float a = at[q * alpha + k];
                        if (a != 0) AXPY8(y, a, t[p][k]);
                    }
                    float *dst = output + ((long)b * L * outHeight + y0 + p) * outWidth + x0 + q;
                    for (int l = 0; l < lanes; l++) dst[(long)l * outHeight * outWidth] = y[l];
                }
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
PC_AVX2 static void input_transform_avx2(const float *packed, int blocks, int paddedHeight, int paddedWidth, int m,
                                         int alpha, const float *bt, int tilesX, int first, int count, float *v,
                                         long xiStride, long ldv) {
    input_transform_body(packed, blocks, paddedHeight, paddedWidth, m, alpha, bt, tilesX, first, count, v, xiStride, ldv);
}

PC_AVX2 static void output_transform_avx2(const float *mtx, long xiStride, long ldm, int outChannels, int m, int alpha,
                                          const float *at, const float *bias, int tilesX, int first, int count,
                                          float *output, int outHeight, int outWidth) {
    output_transform_body(mtx, xiStride, ldm, outChannels, m, alpha, at, bias, tilesX, first, count, output,
                          outHeight, outWidth);
}
#endif

static void input_transform_portable(const float *packed, int blocks, int paddedHeight, int paddedWidth, int m,
                                     int alpha, const float *bt, int tilesX, int first, int count, float *v,
                                     long xiStride, long ldv) {
    input_transform_body(packed, blocks, paddedHeight, paddedWidth, m, alpha, bt, tilesX, first, count, v, xiStride, ldv);
}

static void output_transform_portable(const float *mtx, long xiStride, long ldm, int outChannels, int m, int alpha,
                                      const float *at, const float *bias, int tilesX, int first, int count,
                                      float *output, int outHeight, int outWidth) {
    output_transform_body(mtx, xiStride, ldm, outChannels, m, alpha, at, bias, tilesX, first, count, output,
                          outHeight, outWidth);
}

void pc_winograd_pack_input(const float *input, int channels, int height, int width, int padTop, int padLeft,
                            int paddedHeight, int paddedWidth, float *packed) {
    pack_input_body(input, channels, height, width, padTop, padLeft, paddedHeight, paddedWidth, packed);
}

void pc_winograd_input_transform(const float *packed, int blocks, int paddedHeight, int paddedWidth, int m, int alpha,
                                 const float *bt, int tilesX, int first, int count, float *v, long xiStride, long ldv) {
#ifdef PC_HAVE_X86
    if (pc_kernels_use_avx2()) {
        input_transform_avx2(packed, blocks, paddedHeight, paddedWidth, m, alpha, bt, tilesX, first, count, v, xiStride, ldv);
        return;
    }
#endif
    input_transform_portable(packed, blocks, paddedHeight, paddedWidth, m, alpha, bt, tilesX, first, count, v, xiStride, ldv);
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
