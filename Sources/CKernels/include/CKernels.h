#ifndef PERCEPT_CKERNELS_H
#define PERCEPT_CKERNELS_H
// Percept's hand-written SIMD kernels. Each has an AVX2+FMA version, chosen at run time when
// the CPU has it, and a portable C version with the same results up to float rounding; the
// convolution kernels also have AVX-512 versions (see pc_kernels_level).

#ifdef __cplusplus
extern "C" {
#endif

/// Output channels computed together by the convolution kernels; packed weights and gradient
/// buffers are padded to a multiple of this.
#define PC_CONV_CHANNEL_BLOCK 4
/// Output pixels computed together by `pc_conv_grid`; `pixels` must be a multiple of it.
#define PC_CONV_PIXEL_BLOCK 16
/// Kernel taps a weight-gradient pass handles together; tap lists are padded to a multiple.
#define PC_CONV_TAP_BLOCK 3

/// Stride-1 convolution on the padded grid.
///
/// `input` holds `inChannels` planes `inStride` floats apart: a zero-padded image whose rows are
/// `rowStride` floats long, followed by zeros. Output pixel `p` (row-major on the same grid, so
/// the last columns of each row are junk) of channel `o` is
///   out[o][p] = sum over c, t of weights[o / 4][c][t][o % 4] * input[c][p + offsets[t]],
/// for p in [0, pixels); `pixels` is a multiple of PC_CONV_PIXEL_BLOCK, and `input` must be
/// readable (and finite) up to the largest p + offsets[t]. `weights` is packed as
/// [outBlocks][inChannels][taps][4]; `output` has outBlocks * 4 planes `outStride` floats apart.
void pc_conv_grid(const float *input, long inStride, int inChannels,
                  const float *weights, int outBlocks, const long *offsets, int taps,
                  float *output, long outStride, long pixels);

/// Weight gradient of `pc_conv_grid`, summed over `images`:
///   grad[o][c][t] += sum over i, p of dOut[i][o][p] * input[i][c][p + offsets[t]]
/// for p in [0, pixels), `pixels` a multiple of 8. `dOut` is zero on junk grid columns.
/// Image i's planes start at input + i * inImageStride and dOut + i * outImageStride. `taps`
/// is a multiple of PC_CONV_TAP_BLOCK and `outChannels` of PC_CONV_CHANNEL_BLOCK; `grad` is
/// [outChannels][inChannels][taps].
void pc_conv_grid_weight_grad(const float *input, long inStride, long inImageStride, int inChannels,
                              const float *dOut, long outStride, long outImageStride, int outChannels,
                              int images, long pixels, const long *offsets, int taps, float *grad);

/// x[i] = exp(x[i]) for i < count, in place, within 2 ulp of expf where the result is a normal
/// float. The AVX2 build clamps its input to [ln FLT_MIN, ln FLT_MAX], so far below it gives
/// about FLT_MIN (not a subnormal or 0) and far above about FLT_MAX (not inf); the portable
/// build is expf itself. NaN stays NaN in both.
void pc_exp(float *x, long count);

/// Winograd F(m x m, r x r) pieces (alpha = m + r - 1 <= 8); see Sources/Core/Ops/Winograd.swift.
/// Channels go in blocks of 8. `packed` is [ceil(channels / 8)][paddedHeight][paddedWidth][8]:
/// the image at (padTop, padLeft), zeros around it and in the lanes past the last channel.
void pc_winograd_pack_input(const float *input, int channels, int height, int width, int padTop, int padLeft,
                            int paddedHeight, int paddedWidth, float *packed);
/// V[xi][i][8 * block + lane] = (B^T d B)[xi] for tiles first + i, i < count (tile t's corner is
/// row (t / tilesX) * m, column (t % tilesX) * m of `packed`); xi = alpha * row + column, matrices
/// `xiStride` floats apart with rows `ldv` floats long. `bt` is B^T, alpha x alpha row-major.
void pc_winograd_input_transform(const float *packed, int blocks, int paddedHeight, int paddedWidth, int m, int alpha,
                                 const float *bt, int tilesX, int first, int count, float *v, long xiStride, long ldv);
/// output[o][y][x] = (A^T M A)[p][q] + bias[o] over the valid pixels of tiles first + i, where
/// M[xi][i][o] is laid out as V above. `at` is A^T, m x alpha row-major; `bias` may be NULL.
void pc_winograd_output_transform(const float *mtx, long xiStride, long ldm, int outChannels, int m, int alpha,
                                  const float *at, const float *bias, int tilesX, int first, int count,
                                  float *output, int outHeight, int outWidth);
/// M[xi] = V[xi] U[xi] for xi < matrices: [count x depth] times [depth x width] products, each
/// matrix `*Stride` floats after the last, rows `ld*` floats long; `depth` and `width` are
/// multiples of 8. Returns 0, doing nothing, where there is no AVX2 kernel (use sgemm).
int pc_winograd_products(const float *v, long vStride, long ldv, const float *u, long uStride, long ldu,
                         float *mtx, long mStride, long ldm, int matrices, int count, int depth, int width);
/// U[xi][c][o] = (G g G^T)[xi] for the input channels first <= c < first + count and every
/// output channel, where kernel (o, c)'s r x r taps start at weight[o * outStride + c * inStride]
/// and run in order, or in reverse where `flipped` (sums in float); `g` is G, alpha x r
/// row-major; U's rows are `ldu` floats long, matrices `xiStride` apart.
void pc_winograd_weight_transform(const float *weight, long outStride, long inStride, int flipped, int outChannels,
                                  int first, int count, int r, int alpha, const float *g, float *u, long xiStride,
                                  long ldu);

/// The weight gradient's transform of the output gradient: dP[xi][i][8 * block + lane] =
/// (A dY A^T)[xi] for the m x m tiles first + i of `packed` (the output gradient packed as the
/// input is, without padding), laid out as V above. `at` is A^T, m x alpha row-major.
void pc_winograd_gradient_transform(const float *packed, int blocks, int paddedHeight, int paddedWidth, int m, int alpha,
                                    const float *at, int tilesX, int first, int count, float *dp, long xiStride, long ldp);
/// gradient[o][c] = G^T dU[.][c][o] G (r x r, sums in float) for the transformed weight gradient
/// dU laid out as U above; writes the weights of [outChannels][inChannels][r][r] whose input
/// channel is one of first ..< first + count.
void pc_winograd_weight_gradient_transform(const float *du, long xiStride, long ldu, int outChannels, int inChannels,
                                           int first, int count, int r, int alpha, const float *g, float *gradient);

/// A task of a parallel loop: runs chunk `chunk` of the loop whose state `context` points to.
typedef void (*pc_pool_task)(void *context, long chunk);
/// Runs task(context, c) for every c < chunks on up to `threads` threads: the caller and the
/// pool's workers that arrive while chunks are left (they spin a while after each loop, then
/// sleep). Returns when all chunks are done. Inside another loop's task, or while another thread
/// runs a loop, the chunks run serially on the calling thread.
void pc_pool_run(int threads, long chunks, pc_pool_task task, void *context);

/// Which builds run: 0 portable, 1 AVX2 + FMA, 2 AVX-512 (F, VL, BW, DQ) where a kernel has
/// one, else AVX2. The best the CPU supports, capped by the environment's PERCEPT_KERNELS=avx2
/// or PERCEPT_KERNELS=portable (other values are ignored). The AVX-512 Winograd kernels and
/// grid-convolution forward kernel keep each output's order of operations, so their results
/// equal the AVX2 builds' bit for bit; the grid weight-gradient kernel sums over 16 lanes
/// instead of 8 and agrees to rounding.
int pc_kernels_level(void);
/// 1 when the AVX2+FMA kernels are in use (level >= 1).
int pc_kernels_use_avx2(void);
/// 1 when the AVX-512 kernels are in use (level 2).
int pc_kernels_use_avx512(void);
/// Tests: 1 selects the portable kernels, 0 goes back to the best the CPU supports (and the
/// environment allows).
void pc_kernels_force_portable(int portable);
/// Tests: runs at `level` (0-2), or the best the CPU supports where it supports less (the
/// environment's cap does not apply).
void pc_kernels_force_level(int level);

#ifdef __cplusplus
}
#endif
#endif
