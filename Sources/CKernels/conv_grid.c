// Direct stride-1 convolution kernels on zero-padded planes ("grid" convolution).
//
// A stride-1 convolution over a zero-padded image is, on the flattened padded grid, a sum of
// shifted copies of the input: out[p] = sum_t w[t] * in[p + offset[t]]. Computing every grid
// position (including the few junk columns at the end of each row) turns the kernel into long
// unit-stride vector loops with no im2col matrix and no boundary tests. The AVX2 kernels keep a
// 4-channel x 24-pixel output tile (forward) or a 4-channel x 3-tap gradient tile in twelve
// registers, so each input vector loaded feeds four FMAs.
#include "CKernels.h"
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "targets.h"

enum { CB = PC_CONV_CHANNEL_BLOCK, PB = PC_CONV_PIXEL_BLOCK, TB = PC_CONV_TAP_BLOCK };

// MARK: - Portable versions

static void conv_grid_portable(const float *input, long inStride, int inChannels,
                               const float *weights, int outBlocks, const long *offsets, int taps,
                               float *output, long outStride, long pixels) {
    for (long p = 0; p < pixels; p += PB) {
        for (int b = 0; b < outBlocks; b++) {
            float acc[CB][PB];
            memset(acc, 0, sizeof acc);
            const float *w = weights + (long)b * inChannels * taps * CB;
            for (int c = 0; c < inChannels; c++) {
                const float *x = input + c * inStride + p;
                for (int t = 0; t < taps; t++, w += CB) {
                    const float *xt = x + offsets[t];
                    for (int k = 0; k < CB; k++)
                        for (int j = 0; j < PB; j++) acc[k][j] += w[k] * xt[j];
                }
            }
            for (int k = 0; k < CB; k++) memcpy(output + (b * CB + k) * outStride + p, acc[k], sizeof acc[k]);
        }
    }
}

static void conv_grid_weight_grad_portable(const float *input, long inStride, long inImageStride, int inChannels,
                                           const float *dOut, long outStride, long outImageStride, int outChannels,
                                           int images, long pixels, const long *offsets, int taps, float *grad) {
    for (int o = 0; o < outChannels; o++)
        for (int c = 0; c < inChannels; c++)
            for (int t = 0; t < taps; t++) {
                float s = 0;
                for (int i = 0; i < images; i++) {
                    const float *x = input + i * inImageStride + c * inStride + offsets[t];
                    const float *d = dOut + i * outImageStride + o * outStride;
                    for (long p = 0; p < pixels; p++) s += d[p] * x[p];
                }
                grad[((long)o * inChannels + c) * taps + t] += s;
            }
}

// MARK: - AVX2 + FMA versions

#ifdef PC_HAVE_X86

PC_AVX2 static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

PC_AVX2 static void conv_grid_avx2(const float *input, long inStride, int inChannels,
                                   const float *weights, int outBlocks, const long *offsets, int taps,
                                   float *output, long outStride, long pixels) {
    for (long p = 0; p < pixels; p += PB) {
        for (int b = 0; b < outBlocks; b++) {
            // Eight accumulators, two inputs and one broadcast: clang keeps all in registers.
            __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00;
            __m256 a20 = a00, a21 = a00, a30 = a00, a31 = a00;
            const float *w = weights + (long)b * inChannels * taps * CB;
            for (int c = 0; c < inChannels; c++) {
                const float *x = input + c * inStride + p;
                for (int t = 0; t < taps; t++, w += CB) {
                    const float *xt = x + offsets[t];
                    __m256 x0 = _mm256_loadu_ps(xt), x1 = _mm256_loadu_ps(xt + 8);
                    __m256 v = _mm256_broadcast_ss(w);
                    a00 = _mm256_fmadd_ps(v, x0, a00); a01 = _mm256_fmadd_ps(v, x1, a01);
                    v = _mm256_broadcast_ss(w + 1);
                    a10 = _mm256_fmadd_ps(v, x0, a10); a11 = _mm256_fmadd_ps(v, x1, a11);
                    v = _mm256_broadcast_ss(w + 2);
                    a20 = _mm256_fmadd_ps(v, x0, a20); a21 = _mm256_fmadd_ps(v, x1, a21);
                    v = _mm256_broadcast_ss(w + 3);
                    a30 = _mm256_fmadd_ps(v, x0, a30); a31 = _mm256_fmadd_ps(v, x1, a31);
                }
            }
            float *o = output + (long)b * CB * outStride + p;
            _mm256_storeu_ps(o, a00); _mm256_storeu_ps(o + 8, a01); o += outStride;
            _mm256_storeu_ps(o, a10); _mm256_storeu_ps(o + 8, a11); o += outStride;
            _mm256_storeu_ps(o, a20); _mm256_storeu_ps(o + 8, a21); o += outStride;
            _mm256_storeu_ps(o, a30); _mm256_storeu_ps(o + 8, a31);
        }
    }
}

// The same sums for 3x3 kernels (taps == 9), with the tap loop unrolled and the offsets held in
// registers: the loop bookkeeping otherwise competes with the FMAs for issue slots (measured:
// 13-24% faster on the 16x32x32 and 32x16x16 layers). Each accumulator receives the same FMAs
// in the same order as in conv_grid_avx2, so results are identical.
PC_AVX2 static void conv_grid9_avx2(const float *input, long inStride, int inChannels,
                                    const float *weights, int outBlocks, const long *offsets,
                                    float *output, long outStride, long pixels) {
    const long o0 = offsets[0], o1 = offsets[1], o2 = offsets[2], o3 = offsets[3], o4 = offsets[4];
    const long o5 = offsets[5], o6 = offsets[6], o7 = offsets[7], o8 = offsets[8];
    for (long p = 0; p < pixels; p += PB) {
        for (int b = 0; b < outBlocks; b++) {
            __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00;
            __m256 a20 = a00, a21 = a00, a30 = a00, a31 = a00;
            const float *w = weights + (long)b * inChannels * 9 * CB;
            const float *x = input + p;
            for (int c = 0; c < inChannels; c++, x += inStride, w += 9 * CB) {
#define PC_TAP(t, offset) {                                                                       \
                    const float *xt = x + offset;                                                 \
                    __m256 x0 = _mm256_loadu_ps(xt), x1 = _mm256_loadu_ps(xt + 8);                \
                    __m256 v = _mm256_broadcast_ss(w + CB * t);                                   \
                    a00 = _mm256_fmadd_ps(v, x0, a00); a01 = _mm256_fmadd_ps(v, x1, a01);         \
                    v = _mm256_broadcast_ss(w + CB * t + 1);                                      \
                    a10 = _mm256_fmadd_ps(v, x0, a10); a11 = _mm256_fmadd_ps(v, x1, a11);         \
                    v = _mm256_broadcast_ss(w + CB * t + 2);                                      \
                    a20 = _mm256_fmadd_ps(v, x0, a20); a21 = _mm256_fmadd_ps(v, x1, a21);         \
                    v = _mm256_broadcast_ss(w + CB * t + 3);                                      \
                    a30 = _mm256_fmadd_ps(v, x0, a30); a31 = _mm256_fmadd_ps(v, x1, a31); }
                PC_TAP(0, o0) PC_TAP(1, o1) PC_TAP(2, o2) PC_TAP(3, o3) PC_TAP(4, o4)
                PC_TAP(5, o5) PC_TAP(6, o6) PC_TAP(7, o7) PC_TAP(8, o8)
#undef PC_TAP
            }
            float *o = output + (long)b * CB * outStride + p;
            _mm256_storeu_ps(o, a00); _mm256_storeu_ps(o + 8, a01); o += outStride;
            _mm256_storeu_ps(o, a10); _mm256_storeu_ps(o + 8, a11); o += outStride;
            _mm256_storeu_ps(o, a20); _mm256_storeu_ps(o + 8, a21); o += outStride;
            _mm256_storeu_ps(o, a30); _mm256_storeu_ps(o + 8, a31);
        }
    }
}

// The forward sums at AVX-512: 32 pixels (two 16-float vectors) of four channels at a time, 16
// for a last odd pixel block. Each output receives the same FMAs in the same order as in the
// AVX2 kernels, so results are identical.
PC_AVX512 static inline __attribute__((always_inline)) void conv_grid_block16(const float *input, long inStride, int inChannels, const float *w,
                                               const long *offsets, int taps, int nine, int two, float *o,
                                               long outStride) {
    __m512 a00 = _mm512_setzero_ps(), a01 = a00, a10 = a00, a11 = a00;
    __m512 a20 = a00, a21 = a00, a30 = a00, a31 = a00;
    const float *x = input;
    for (int c = 0; c < inChannels; c++, x += inStride) {
        for (int t = 0; t < (nine ? 9 : taps); t++, w += CB) {
            const float *xt = x + offsets[t];
            const __m512 x0 = _mm512_loadu_ps(xt), x1 = two ? _mm512_loadu_ps(xt + 16) : x0;
            __m512 v = _mm512_set1_ps(w[0]);
            a00 = _mm512_fmadd_ps(v, x0, a00); if (two) a01 = _mm512_fmadd_ps(v, x1, a01);
            v = _mm512_set1_ps(w[1]);
            a10 = _mm512_fmadd_ps(v, x0, a10); if (two) a11 = _mm512_fmadd_ps(v, x1, a11);
            v = _mm512_set1_ps(w[2]);
            a20 = _mm512_fmadd_ps(v, x0, a20); if (two) a21 = _mm512_fmadd_ps(v, x1, a21);
            v = _mm512_set1_ps(w[3]);
            a30 = _mm512_fmadd_ps(v, x0, a30); if (two) a31 = _mm512_fmadd_ps(v, x1, a31);
        }
    }
    _mm512_storeu_ps(o, a00); if (two) _mm512_storeu_ps(o + 16, a01); o += outStride;
    _mm512_storeu_ps(o, a10); if (two) _mm512_storeu_ps(o + 16, a11); o += outStride;
    _mm512_storeu_ps(o, a20); if (two) _mm512_storeu_ps(o + 16, a21); o += outStride;
    _mm512_storeu_ps(o, a30); if (two) _mm512_storeu_ps(o + 16, a31);
}

PC_AVX512 static void conv_grid_avx512(const float *input, long inStride, int inChannels,
                                       const float *weights, int outBlocks, const long *offsets, int taps,
                                       float *output, long outStride, long pixels) {
    for (long p = 0; p < pixels; p += 2 * PB) {
        const int two = pixels - p >= 2 * PB;
        for (int b = 0; b < outBlocks; b++) {
            const float *w = weights + (long)b * inChannels * taps * CB;
            float *o = output + (long)b * CB * outStride + p;
            // Constant flags, so each combination compiles to its own unrolled loop.
            if (taps == 9) {
                if (two) conv_grid_block16(input + p, inStride, inChannels, w, offsets, 9, 1, 1, o, outStride);
                else conv_grid_block16(input + p, inStride, inChannels, w, offsets, 9, 1, 0, o, outStride);
            } else {
                if (two) conv_grid_block16(input + p, inStride, inChannels, w, offsets, taps, 0, 1, o, outStride);
                else conv_grid_block16(input + p, inStride, inChannels, w, offsets, taps, 0, 0, o, outStride);
            }
        }
    }
}

// The weight gradient: a 4-channel x 3-tap tile of sums over the pixels of every image, one
// vector of pixels at a time, written once and built at two widths (below). STEP pixels per
// vector; MASK declares what LOAD needs for the pixels left (AVX-512 masks a last 8); REDUCE
// adds a vector's lanes.
#define PC_WEIGHT_GRAD_BUILD(name, VEC, ZERO, STEP, MASK, LOAD, FMA, REDUCE)                                     \
    static void name(const float *input, long inStride, long inImageStride, int inChannels, const float *dOut,     \
                     long outStride, long outImageStride, int outChannels, int images, long pixels,               \
                     const long *offsets, int taps, float *grad) {                                                \
        for (int o = 0; o < outChannels; o += CB)                                                                 \
            for (int c = 0; c < inChannels; c++)                                                                  \
                for (int t = 0; t < taps; t += TB) {                                                              \
                    const long s0 = offsets[t], s1 = offsets[t + 1], s2 = offsets[t + 2];                        \
                    VEC a00 = ZERO(), a01 = a00, a02 = a00, a10 = a00, a11 = a00, a12 = a00;                      \
                    VEC a20 = a00, a21 = a00, a22 = a00, a30 = a00, a31 = a00, a32 = a00;                         \
                    for (int i = 0; i < images; i++) {                                                            \
                        const float *x = input + i * inImageStride + c * inStride;                                \
                        const float *d = dOut + i * outImageStride + o * outStride;                               \
                        for (long p = 0; p < pixels; p += STEP) {                                                 \
                            MASK;                                                                                 \
                            const VEC x0 = LOAD(x + p + s0), x1 = LOAD(x + p + s1), x2 = LOAD(x + p + s2);        \
                            VEC v = LOAD(d + p);                                                                  \
                            a00 = FMA(v, x0, a00); a01 = FMA(v, x1, a01); a02 = FMA(v, x2, a02);                  \
                            v = LOAD(d + outStride + p);                                                          \
                            a10 = FMA(v, x0, a10); a11 = FMA(v, x1, a11); a12 = FMA(v, x2, a12);                  \
                            v = LOAD(d + 2 * outStride + p);                                                      \
                            a20 = FMA(v, x0, a20); a21 = FMA(v, x1, a21); a22 = FMA(v, x2, a22);                  \
                            v = LOAD(d + 3 * outStride + p);                                                      \
                            a30 = FMA(v, x0, a30); a31 = FMA(v, x1, a31); a32 = FMA(v, x2, a32);                  \
                        }                                                                                         \
                    }                                                                                             \
                    float *g = grad + ((long)o * inChannels + c) * taps + t;                                      \
                    const long row = (long)inChannels * taps;                                                     \
                    g[0] += REDUCE(a00); g[1] += REDUCE(a01); g[2] += REDUCE(a02); g += row;                      \
                    g[0] += REDUCE(a10); g[1] += REDUCE(a11); g[2] += REDUCE(a12); g += row;                      \
                    g[0] += REDUCE(a20); g[1] += REDUCE(a21); g[2] += REDUCE(a22); g += row;                      \
                    g[0] += REDUCE(a30); g[1] += REDUCE(a31); g[2] += REDUCE(a32);                                \
                }                                                                                                 \
    }

// At AVX-512, 16 pixels at a time (a last 8 masked). Each sum splits over 16 lanes rather than 8
// before the final horizontal add, so results differ from the AVX2 kernel's by float rounding.
#define PC_MASK16 const __mmask16 m = pixels - p >= 16 ? 0xFFFF : 0x00FF
#define PC_LOAD16(ptr) _mm512_maskz_loadu_ps(m, ptr)
PC_AVX512 PC_WEIGHT_GRAD_BUILD(conv_grid_weight_grad_avx512, __m512, _mm512_setzero_ps, 16, PC_MASK16, PC_LOAD16,
                               _mm512_fmadd_ps, _mm512_reduce_add_ps)
PC_AVX2 PC_WEIGHT_GRAD_BUILD(conv_grid_weight_grad_avx2, __m256, _mm256_setzero_ps, 8, (void)0, _mm256_loadu_ps,
                             _mm256_fmadd_ps, hsum)
#endif

// MARK: - Dispatch

// 0: portable, 1: AVX2 + FMA, 2: AVX-512 (F, VL, BW, DQ) as well; -1 until first asked. Kernels
// running on several threads may ask at once, so the level is published with one atomic store.
static _Atomic int level = -1, best_level = -1;

static int detect_level(void) {
#ifdef PC_HAVE_X86
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) return 0;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")) return 2;
    return 1;
#else
    return 0;
#endif
}

// The best level, capped by PERCEPT_KERNELS=avx2 or =portable (other values are ignored).
static int allowed_level(void) {
    if (atomic_load(&best_level) < 0) atomic_store(&best_level, detect_level());
    int allowed = atomic_load(&best_level);
    const char *cap = getenv("PERCEPT_KERNELS");
    if (cap && strcmp(cap, "avx2") == 0 && allowed > 1) allowed = 1;
    if (cap && strcmp(cap, "portable") == 0) allowed = 0;
    return allowed;
}

int pc_kernels_level(void) {
    int current = atomic_load_explicit(&level, memory_order_acquire);
    if (current < 0) {
        current = allowed_level();  // the same answer on every thread that races here
        atomic_store_explicit(&level, current, memory_order_release);
    }
    return current;
}

int pc_kernels_use_avx2(void) { return pc_kernels_level() >= 1; }
int pc_kernels_use_avx512(void) { return pc_kernels_level() >= 2; }

void pc_kernels_force_level(int wanted) {
    (void)pc_kernels_level();
    const int best = atomic_load(&best_level);
    atomic_store(&level, wanted < 0 || wanted > best ? best : wanted);
}

void pc_kernels_force_portable(int portable) {
    atomic_store(&level, portable ? 0 : allowed_level());
}

void pc_conv_grid(const float *input, long inStride, int inChannels,
                  const float *weights, int outBlocks, const long *offsets, int taps,
                  float *output, long outStride, long pixels) {
#ifdef PC_HAVE_X86
    if (pc_kernels_use_avx512()) {
        conv_grid_avx512(input, inStride, inChannels, weights, outBlocks, offsets, taps, output, outStride, pixels);
        return;
    }
    if (pc_kernels_use_avx2()) {
        if (taps == 9) conv_grid9_avx2(input, inStride, inChannels, weights, outBlocks, offsets, output, outStride, pixels);
        else conv_grid_avx2(input, inStride, inChannels, weights, outBlocks, offsets, taps, output, outStride, pixels);
        return;
    }
#endif
    conv_grid_portable(input, inStride, inChannels, weights, outBlocks, offsets, taps, output, outStride, pixels);
}

void pc_conv_grid_weight_grad(const float *input, long inStride, long inImageStride, int inChannels,
                              const float *dOut, long outStride, long outImageStride, int outChannels,
                              int images, long pixels, const long *offsets, int taps, float *grad) {
#ifdef PC_HAVE_X86
    if (pc_kernels_use_avx512()) {
        conv_grid_weight_grad_avx512(input, inStride, inImageStride, inChannels, dOut, outStride, outImageStride,
                                     outChannels, images, pixels, offsets, taps, grad);
        return;
    }
    if (pc_kernels_use_avx2()) {
        conv_grid_weight_grad_avx2(input, inStride, inImageStride, inChannels, dOut, outStride, outImageStride,
                                   outChannels, images, pixels, offsets, taps, grad);
        return;
    }
#endif
    conv_grid_weight_grad_portable(input, inStride, inImageStride, inChannels, dOut, outStride, outImageStride,
                                   outChannels, images, pixels, offsets, taps, grad);
}
