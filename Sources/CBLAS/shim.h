#ifndef PERCEPT_CBLAS_SHIM_H
#define PERCEPT_CBLAS_SHIM_H
// OpenBLAS's CBLAS interface plus openblas_set_num_threads (Debian: libopenblas-dev).
#include <cblas.h>
#endif
