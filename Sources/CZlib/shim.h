#ifndef PERCEPT_CZLIB_SHIM_H
#define PERCEPT_CZLIB_SHIM_H
#include <zlib.h>
#endif
