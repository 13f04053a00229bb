#ifndef PERCEPT_CHDF5_SHIM_H
#define PERCEPT_CHDF5_SHIM_H
#include <hdf5.h>
#endif
