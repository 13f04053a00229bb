#ifndef PERCEPT_CPNG_SHIM_H
#define PERCEPT_CPNG_SHIM_H
#include <png.h>
#endif
