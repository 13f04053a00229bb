#ifndef PERCEPT_CTURBOJPEG_SHIM_H
#define PERCEPT_CTURBOJPEG_SHIM_H
#include <turbojpeg.h>

/* libjpeg-turbo's TurboJPEG API reports errors as return codes (its own setjmp stays inside
   C), so no longjmp ever crosses a Swift frame. The flags are C macros, hence these wrappers. */

static inline void *percept_jpeg_create(void) { return tjInitDecompress(); }

static inline void percept_jpeg_destroy(void *handle) { tjDestroy(handle); }

/* Width, height, chroma subsampling and colour space (TJCS_*) of the JPEG in `bytes`. */
static inline int percept_jpeg_header(void *handle, const unsigned char *bytes, unsigned long size,
                                      int *width, int *height, int *subsampling, int *colorspace) {
    return tjDecompressHeader3(handle, bytes, size, width, height, subsampling, colorspace);
}

/* Decodes into `pixels` (width x height, `channels` 1 gray, 3 RGB or 4 CMYK) with the accurate
   IDCT and fancy upsampling (libjpeg's and PIL's defaults); any warning (truncated or corrupt
   data) is an error, and progressive files of absurdly many scans are refused. */
static inline int percept_jpeg_decode(void *handle, const unsigned char *bytes, unsigned long size,
                                      unsigned char *pixels, int width, int height, int channels) {
    int format = channels == 1 ? TJPF_GRAY : channels == 3 ? TJPF_RGB : TJPF_CMYK;
    return tjDecompress2(handle, bytes, size, pixels, width, 0, height, format,
                         TJFLAG_ACCURATEDCT | TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS);
}

static inline const char *percept_jpeg_error(void *handle) { return tjGetErrorStr2(handle); }

static inline int percept_jpeg_colorspace_gray(void) { return TJCS_GRAY; }
static inline int percept_jpeg_colorspace_cmyk(void) { return TJCS_CMYK; }
static inline int percept_jpeg_colorspace_ycck(void) { return TJCS_YCCK; }

#endif
