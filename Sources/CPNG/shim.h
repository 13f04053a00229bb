#ifndef PERCEPT_CPNG_SHIM_H
#define PERCEPT_CPNG_SHIM_H
#include <png.h>
#include <string.h>
#include <stdlib.h>

/* Only libpng's simplified png_image API is used: it catches libpng's longjmp internally,
   so no setjmp/longjmp ever crosses a Swift frame. The function-like macros of png.h do not
   import into Swift, hence these wrappers. */

/* Header of a PNG held in memory; fills format, width, height, colormap_entries. */
static inline int percept_png_begin_read(png_image *image, const void *bytes, size_t size) {
    memset(image, 0, sizeof *image);
    image->version = PNG_IMAGE_VERSION;
    return png_image_begin_read_from_memory(image, bytes, size);
}

/* Whether the file behind `image` stores 16-bit samples (after begin_read). */
static inline int percept_png_is_linear(const png_image *image) {
    return (image->format & PNG_FORMAT_FLAG_LINEAR) != 0;
}

/* Whether the file behind `image` is a palette image (after begin_read). */
static inline int percept_png_is_colormapped(const png_image *image) {
    return (image->format & PNG_FORMAT_FLAG_COLORMAP) != 0;
}

/* Treat 16-bit input as sRGB-encoded so 8-bit output is value / 257 rather than a gamma curve. */
static inline void percept_png_assume_16bit_srgb(png_image *image) {
    image->flags |= PNG_IMAGE_FLAG_16BIT_sRGB;
}

/* Decodes into `buffer` (PNG_IMAGE_SIZE bytes for the chosen format, zero-filled so that
   alpha is composited onto black); row stride 0 means packed rows. */
static inline int percept_png_finish_read(png_image *image, unsigned format, void *buffer, void *colormap) {
    image->format = format;
    return png_image_finish_read(image, NULL, buffer, 0, colormap);
}

/* Encodes 8-bit packed pixels into a malloc'ed PNG; the caller frees *out. */
static inline int percept_png_write_to_memory(unsigned width, unsigned height, unsigned format,
                                              const void *pixels, const void *colormap,
                                              unsigned colormap_entries,
                                              void **out, size_t *out_size, char *message,
                                              size_t message_size) {
    png_image image;
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    image.width = width;
    image.height = height;
    image.format = format;
    image.colormap_entries = colormap_entries;
    png_alloc_size_t size = 0;
    if (!png_image_write_to_memory(&image, NULL, &size, 0, pixels, 0, colormap)) {
        snprintf(message, message_size, "%s", image.message);
        png_image_free(&image);
        return 0;
    }
    void *memory = malloc(size ? size : 1);
    if (!memory) { snprintf(message, message_size, "out of memory"); return 0; }
    if (!png_image_write_to_memory(&image, memory, &size, 0, pixels, 0, colormap)) {
        snprintf(message, message_size, "%s", image.message);
        png_image_free(&image);
        free(memory);
        return 0;
    }
    *out = memory;
    *out_size = size;
    return 1;
}

static inline unsigned percept_png_format_gray(void) { return PNG_FORMAT_GRAY; }
static inline unsigned percept_png_format_gray_alpha(void) { return PNG_FORMAT_GA; }
static inline unsigned percept_png_format_rgb(void) { return PNG_FORMAT_RGB; }
static inline unsigned percept_png_format_rgba(void) { return PNG_FORMAT_RGBA; }
static inline unsigned percept_png_format_linear_gray(void) { return PNG_FORMAT_LINEAR_Y; }
static inline unsigned percept_png_format_rgba_colormap(void) { return PNG_FORMAT_RGBA_COLORMAP; }
static inline unsigned percept_png_format_rgb_colormap(void) { return PNG_FORMAT_RGB_COLORMAP; }
static inline unsigned percept_png_format_linear_rgb_alpha(void) { return PNG_FORMAT_LINEAR_RGB_ALPHA; }
static inline unsigned percept_png_format_linear_gray_alpha(void) { return PNG_FORMAT_LINEAR_Y_ALPHA; }
static inline unsigned percept_png_format_linear_rgb(void) { return PNG_FORMAT_LINEAR_RGB; }

#endif
