// Vectorised exp for the softmax family (softmax, log-softmax, softmax cross-entropy).
//
// exp(x) = 2^n * exp(r) with n = round(x / ln 2) and r = x - n ln 2 in [-ln 2 / 2, ln 2 / 2];
// exp(r) is Cephes' degree-6 polynomial (about 1 ulp on that range) and 2^n is built in the
// exponent bits. Inputs are clamped to [-87.33654, 88.7228] first (just inside ln FLT_MIN and ln FLT_MAX), so
// the result is a normal float from about FLT_MIN up to about FLT_MAX, never a subnormal (slow
// on x86) nor 0 nor inf; NaN stays NaN. The portable build is libm's expf, which does give
// subnormals, 0 and inf beyond those bounds; inside them the two agree within 2 ulp.
#include "CKernels.h"
#include <math.h>
#include "targets.h"

static void exp_portable(float *x, long count) {
    for (long i = 0; i < count; i++) x[i] = expf(x[i]);
}

#ifdef PC_HAVE_X86

PC_AVX2 static inline __m256 exp8(__m256 x) {
    const __m256 hi = _mm256_set1_ps(88.7228f), lo = _mm256_set1_ps(-87.33654f);
    // max(lo, x) and min(hi, .) return their second operand when it is NaN: NaN survives.
    x = _mm256_min_ps(hi, _mm256_max_ps(lo, x));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    // r = x - n ln 2, with ln 2 split in two so that n * C1 is exact.
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    // 2^n: n + 127 in the exponent field. n is in [-126, 128]; 2^128 has no float, so the
    // scaling is applied as two halves, each a normal power of two.
    __m256i e = _mm256_cvtps_epi32(n);
    __m256i half = _mm256_srai_epi32(e, 1);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, _mm256_set1_epi32(127)), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(e, half), _mm256_set1_epi32(127)), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

PC_AVX2 static void exp_avx2(float *x, long count) {
    long i = 0;
    for (; i + 8 <= count; i += 8) _mm256_storeu_ps(x + i, exp8(_mm256_loadu_ps(x + i)));
    if (i < count) {
        // The tail through a zero-padded vector: lanes past the end are computed and dropped.
        float tail[8] = {0};
        for (long j = i; j < count; j++) tail[j - i] = x[j];
        _mm256_storeu_ps(tail, exp8(_mm256_loadu_ps(tail)));
        for (long j = i; j < count; j++) x[j] = tail[j - i];
    }
}
#endif

void pc_exp(float *x, long count) {
#ifdef PC_HAVE_X86
    if (pc_kernels_use_avx2()) { exp_avx2(x, count); return; }
#endif
    exp_portable(x, count);
}
