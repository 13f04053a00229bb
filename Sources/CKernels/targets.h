// The x86 instruction sets the kernels are compiled for. Each kernel file builds its hot loops
// once per level and picks one at run time (pc_kernels_level in conv_grid.c), so these are
// function attributes, never global compiler flags.
#ifndef PC_TARGETS_H
#define PC_TARGETS_H

#if defined(__x86_64__)
#include <immintrin.h>
#define PC_HAVE_X86 1
#define PC_AVX2 __attribute__((target("avx2,fma")))
#define PC_AVX512 __attribute__((target("avx2,fma,avx512f,avx512vl,avx512bw,avx512dq")))
#endif

#endif
