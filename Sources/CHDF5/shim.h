#ifndef PERCEPT_CHDF5_SHIM_H
#define PERCEPT_CHDF5_SHIM_H
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

/* HDF5's predefined ids are macros Swift cannot import, and on Debian's thread-safe build a
   failing call made outside H5E_BEGIN_TRY prints an error stack (and, off the main thread,
   "infinite loop closing library" at exit). So every call that can fail goes through one of
   these wrappers, which run it with automatic error printing switched off. Each returns a
   negative value on failure; percept_h5_last_error then describes the innermost cause. */

static inline hid_t percept_h5_native_uint8(void) { return H5T_NATIVE_UINT8; }
static inline hid_t percept_h5_native_int32(void) { return H5T_NATIVE_INT32; }
static inline hid_t percept_h5_native_int64(void) { return H5T_NATIVE_INT64; }
static inline hid_t percept_h5_native_float(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t percept_h5_native_double(void) { return H5T_NATIVE_DOUBLE; }

static herr_t percept_h5_walk_first(unsigned n, const H5E_error2_t *error, void *data) {
    if (n == 0) snprintf((char *)data, 256, "%s", error->desc ? error->desc : "");
    return 0;
}

/* Description of the innermost error on this thread's HDF5 error stack ("" if none). */
static inline void percept_h5_last_error(char *buffer /* 256 bytes */) {
    buffer[0] = 0;
    H5E_BEGIN_TRY { H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, percept_h5_walk_first, buffer); } H5E_END_TRY;
}

static inline htri_t percept_h5_is_hdf5(const char *name) {
    htri_t r; H5E_BEGIN_TRY { r = H5Fis_hdf5(name); } H5E_END_TRY; return r;
}

static inline hid_t percept_h5_file_create(const char *name) {
    hid_t r; H5E_BEGIN_TRY { r = H5Fcreate(name, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT); } H5E_END_TRY; return r;
}

static inline hid_t percept_h5_file_open(const char *name, int writable) {
    hid_t r;
    H5E_BEGIN_TRY { r = H5Fopen(name, writable ? H5F_ACC_RDWR : H5F_ACC_RDONLY, H5P_DEFAULT); } H5E_END_TRY;
    return r;
}

/* Closes any id this shim hands out, whatever its kind. */
static inline herr_t percept_h5_close(hid_t id) {
    herr_t r = -1;
    H5E_BEGIN_TRY {
        switch (H5Iget_type(id)) {
        case H5I_FILE: r = H5Fclose(id); break;
        case H5I_GROUP: r = H5Gclose(id); break;
        case H5I_DATASET: r = H5Dclose(id); break;
        case H5I_ATTR: r = H5Aclose(id); break;
        case H5I_DATASPACE: r = H5Sclose(id); break;
        case H5I_DATATYPE: r = H5Tclose(id); break;
        case H5I_GENPROP_LST: r = H5Pclose(id); break;
        default: r = -1;
        }
    } H5E_END_TRY;
    return r;
}

static inline herr_t percept_h5_flush(hid_t id) {
    herr_t r; H5E_BEGIN_TRY { r = H5Fflush(id, H5F_SCOPE_LOCAL); } H5E_END_TRY; return r;
}

static inline hid_t percept_h5_group_create(hid_t location, const char *name) {
    hid_t r = -1;
    H5E_BEGIN_TRY {
        hid_t links = H5Pcreate(H5P_LINK_CREATE);
        if (links >= 0) {
            H5Pset_create_intermediate_group(links, 1);
            r = H5Gcreate2(location, name, links, H5P_DEFAULT, H5P_DEFAULT);
            H5Pclose(links);
        }
    } H5E_END_TRY;
    return r;
}

/* 1 if the path `name` exists under `location` (every component checked), 0 if not. */
static inline htri_t percept_h5_exists(hid_t location, const char *name) {
    htri_t r = 1;
    char path[1024];
    size_t length = strlen(name);
    if (length >= sizeof path) return -1;
    memcpy(path, name, length + 1);
    H5E_BEGIN_TRY {
        for (size_t i = 1; i <= length && r > 0; i++) {
            if (path[i] == '/' || path[i] == 0) {
                char saved = path[i];
                path[i] = 0;
                r = H5Lexists(location, path, H5P_DEFAULT);
                if (r > 0) r = H5Oexists_by_name(location, path, H5P_DEFAULT);
                path[i] = saved;
            }
        }
    } H5E_END_TRY;
    return r < 0 ? 0 : r;
}

static inline hid_t percept_h5_object_open(hid_t location, const char *name) {
    hid_t r; H5E_BEGIN_TRY { r = H5Oopen(location, name, H5P_DEFAULT); } H5E_END_TRY; return r;
}

/* 1 for a group, 2 for a dataset, 0 for anything else. */
static inline int percept_h5_object_kind(hid_t id) {
    H5I_type_t t; H5E_BEGIN_TRY { t = H5Iget_type(id); } H5E_END_TRY;
    return t == H5I_GROUP ? 1 : t == H5I_DATASET ? 2 : t == H5I_FILE ? 1 : 0;
}

static inline long long percept_h5_group_member_count(hid_t group) {
    H5G_info_t info; herr_t r;
    H5E_BEGIN_TRY { r = H5Gget_info(group, &info); } H5E_END_TRY;
    return r < 0 ? -1 : (long long)info.nlinks;
}

/* Name of the index-th member in name order, as a malloc'ed string the caller frees. */
static inline char *percept_h5_group_member_name(hid_t group, unsigned long long index) {
    char *name = NULL;
    H5E_BEGIN_TRY {
        ssize_t length = H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, index, NULL, 0, H5P_DEFAULT);
        if (length >= 0) {
            name = malloc((size_t)length + 1);
            if (name && H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, index, name, (size_t)length + 1, H5P_DEFAULT) < 0) {
                free(name); name = NULL;
            }
        }
    } H5E_END_TRY;
    return name;
}

/* Creates a dataset; `max_dims` entries of -1 mean unlimited. With `chunk` non-NULL the
   dataset is chunked, shuffled when `shuffle` is set and deflated when gzip_level > 0.
   Missing parent groups are created. */
static inline hid_t percept_h5_dataset_create(hid_t location, const char *name, hid_t type, int rank,
                                              const long long *dims, const long long *max_dims,
                                              const long long *chunk, int shuffle, int gzip_level) {
    hid_t r = -1;
    hsize_t current[H5S_MAX_RANK], maximum[H5S_MAX_RANK], chunks[H5S_MAX_RANK];
    if (rank < 0 || rank > H5S_MAX_RANK) return -1;
    for (int i = 0; i < rank; i++) {
        current[i] = (hsize_t)dims[i];
        maximum[i] = max_dims && max_dims[i] < 0 ? H5S_UNLIMITED : (hsize_t)(max_dims ? max_dims[i] : dims[i]);
        if (chunk) chunks[i] = (hsize_t)chunk[i];
    }
    H5E_BEGIN_TRY {
        hid_t space = rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(rank, current, maximum);
        hid_t creation = H5Pcreate(H5P_DATASET_CREATE);
        hid_t links = H5Pcreate(H5P_LINK_CREATE);
        int ok = space >= 0 && creation >= 0 && links >= 0;
        if (ok) ok = H5Pset_create_intermediate_group(links, 1) >= 0;
        if (ok && chunk && rank > 0) {
            ok = H5Pset_chunk(creation, rank, chunks) >= 0;
            if (ok && shuffle) ok = H5Pset_shuffle(creation) >= 0;
            if (ok && gzip_level > 0) ok = H5Pset_deflate(creation, (unsigned)gzip_level) >= 0;
        }
        if (ok) r = H5Dcreate2(location, name, type, space, links, creation, H5P_DEFAULT);
        if (space >= 0) H5Sclose(space);
        if (creation >= 0) H5Pclose(creation);
        if (links >= 0) H5Pclose(links);
    } H5E_END_TRY;
    return r;
}

static inline hid_t percept_h5_dataset_open(hid_t location, const char *name) {
    hid_t r; H5E_BEGIN_TRY { r = H5Dopen2(location, name, H5P_DEFAULT); } H5E_END_TRY; return r;
}

/* Rank of the dataset (0 for scalars), filling `dims` (room for 32). */
static inline int percept_h5_dataset_shape(hid_t dataset, long long *dims) {
    int rank = -1;
    H5E_BEGIN_TRY {
        hid_t space = H5Dget_space(dataset);
        if (space >= 0) {
            hsize_t d[H5S_MAX_RANK];
            rank = H5Sget_simple_extent_ndims(space);
            if (rank >= 0 && H5Sget_simple_extent_dims(space, d, NULL) < 0) rank = -1;
            for (int i = 0; i < rank; i++) dims[i] = (long long)d[i];
            H5Sclose(space);
        }
    } H5E_END_TRY;
    return rank;
}

/* Element type of a dataset (or attribute when `is_attribute`): class 0 integer, 1 float,
   2 string, 3 other; size in bytes; signedness. */
static inline int percept_h5_type_info(hid_t object, int is_attribute, int *type_class, size_t *size, int *is_signed) {
    int r = -1;
    H5E_BEGIN_TRY {
        hid_t type = is_attribute ? H5Aget_type(object) : H5Dget_type(object);
        if (type >= 0) {
            H5T_class_t c = H5Tget_class(type);
            *type_class = c == H5T_INTEGER ? 0 : c == H5T_FLOAT ? 1 : c == H5T_STRING ? 2 : 3;
            *size = H5Tget_size(type);
            *is_signed = c == H5T_INTEGER ? H5Tget_sign(type) == H5T_SGN_2 : 1;
            if (c == H5T_STRING && H5Tis_variable_str(type) > 0) *size = 0;
            H5Tclose(type);
            r = 0;
        }
    } H5E_END_TRY;
    return r;
}

/* Chunk shape (returns the rank, or 0 when not chunked) and filters of a dataset. */
static inline int percept_h5_dataset_layout(hid_t dataset, long long *chunk, int *gzip_level, int *shuffle) {
    int rank = -1;
    *gzip_level = 0; *shuffle = 0;
    H5E_BEGIN_TRY {
        hid_t creation = H5Dget_create_plist(dataset);
        if (creation >= 0) {
            rank = 0;
            if (H5Pget_layout(creation) == H5D_CHUNKED) {
                hsize_t c[H5S_MAX_RANK];
                rank = H5Pget_chunk(creation, H5S_MAX_RANK, c);
                for (int i = 0; i < rank; i++) chunk[i] = (long long)c[i];
                int filters = H5Pget_nfilters(creation);
                for (int i = 0; i < filters; i++) {
                    unsigned flags, config; size_t count = 1; unsigned values[4] = {0};
                    H5Z_filter_t f = H5Pget_filter2(creation, (unsigned)i, &flags, &count, values, 0, NULL, &config);
                    if (f == H5Z_FILTER_DEFLATE) *gzip_level = count > 0 ? (int)values[0] : 1;
                    if (f == H5Z_FILTER_SHUFFLE) *shuffle = 1;
                }
            }
            H5Pclose(creation);
        }
    } H5E_END_TRY;
    return rank;
}

static inline herr_t percept_h5_dataset_extend(hid_t dataset, int rank, const long long *dims) {
    hsize_t d[H5S_MAX_RANK];
    for (int i = 0; i < rank; i++) d[i] = (hsize_t)dims[i];
    herr_t r; H5E_BEGIN_TRY { r = H5Dset_extent(dataset, d); } H5E_END_TRY; return r;
}

/* Reads (or writes) rows [start, start + count) along the first dimension; the memory
   buffer holds exactly those rows. Rank 0 datasets are read whole. */
static inline herr_t percept_h5_dataset_rows(hid_t dataset, hid_t memory_type, long long start,
                                             long long count, void *buffer, int write) {
    herr_t r = -1;
    H5E_BEGIN_TRY {
        hid_t file_space = H5Dget_space(dataset);
        int rank = file_space >= 0 ? H5Sget_simple_extent_ndims(file_space) : -1;
        if (rank == 0) {
            r = write ? H5Dwrite(dataset, memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buffer)
                      : H5Dread(dataset, memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buffer);
        } else if (rank > 0) {
            hsize_t dims[H5S_MAX_RANK], offset[H5S_MAX_RANK], size[H5S_MAX_RANK];
            H5Sget_simple_extent_dims(file_space, dims, NULL);
            for (int i = 0; i < rank; i++) { offset[i] = 0; size[i] = dims[i]; }
            offset[0] = (hsize_t)start; size[0] = (hsize_t)count;
            if (start >= 0 && count >= 0 && (hsize_t)(start + count) <= dims[0]) {
                if (count == 0) {
                    r = 0;
                } else if (H5Sselect_hyperslab(file_space, H5S_SELECT_SET, offset, NULL, size, NULL) >= 0) {
                    hid_t memory_space = H5Screate_simple(rank, size, NULL);
                    if (memory_space >= 0) {
                        r = write ? H5Dwrite(dataset, memory_type, memory_space, file_space, H5P_DEFAULT, buffer)
                                  : H5Dread(dataset, memory_type, memory_space, file_space, H5P_DEFAULT, buffer);
                        H5Sclose(memory_space);
                    }
                }
            }
        }
        if (file_space >= 0) H5Sclose(file_space);
    } H5E_END_TRY;
    return r;
}

/* Reads the rows of `runs` row ranges (`starts[i]`, `counts[i]`, ascending and disjoint) as one
   union hyperslab into `buffer`, the rows one after another in file order. */
static inline herr_t percept_h5_dataset_row_runs(hid_t dataset, hid_t memory_type, const long long *starts,
                                                 const long long *counts, int runs, void *buffer) {
    herr_t r = -1;
    H5E_BEGIN_TRY {
        hid_t file_space = H5Dget_space(dataset);
        int rank = file_space >= 0 ? H5Sget_simple_extent_ndims(file_space) : -1;
        if (rank > 0 && runs > 0) {
            hsize_t dims[H5S_MAX_RANK], offset[H5S_MAX_RANK], size[H5S_MAX_RANK];
            H5Sget_simple_extent_dims(file_space, dims, NULL);
            for (int i = 0; i < rank; i++) { offset[i] = 0; size[i] = dims[i]; }
            hsize_t total = 0;
            int ok = 1;
            for (int run = 0; run < runs && ok; run++) {
                if (starts[run] < 0 || counts[run] <= 0 || (hsize_t)(starts[run] + counts[run]) > dims[0]) { ok = 0; break; }
                offset[0] = (hsize_t)starts[run]; size[0] = (hsize_t)counts[run];
                ok = H5Sselect_hyperslab(file_space, run == 0 ? H5S_SELECT_SET : H5S_SELECT_OR, offset, NULL, size, NULL) >= 0;
                total += size[0];
            }
            if (ok) {
                size[0] = total;
                hid_t memory_space = H5Screate_simple(rank, size, NULL);
                if (memory_space >= 0) {
                    r = H5Dread(dataset, memory_type, memory_space, file_space, H5P_DEFAULT, buffer);
                    H5Sclose(memory_space);
                }
            }
        }
        if (file_space >= 0) H5Sclose(file_space);
    } H5E_END_TRY;
    return r;
}

static inline htri_t percept_h5_attribute_exists(hid_t object, const char *name) {
    htri_t r; H5E_BEGIN_TRY { r = H5Aexists(object, name); } H5E_END_TRY; return r;
}

static inline hid_t percept_h5_attribute_open(hid_t object, const char *name) {
    hid_t r; H5E_BEGIN_TRY { r = H5Aopen(object, name, H5P_DEFAULT); } H5E_END_TRY; return r;
}

/* Number of elements of an attribute (1 for scalars), or -1. */
static inline long long percept_h5_attribute_count(hid_t attribute, int *is_scalar) {
    long long r = -1;
    H5E_BEGIN_TRY {
        hid_t space = H5Aget_space(attribute);
        if (space >= 0) {
            r = (long long)H5Sget_simple_extent_npoints(space);
            *is_scalar = H5Sget_simple_extent_type(space) == H5S_SCALAR;
            H5Sclose(space);
        }
    } H5E_END_TRY;
    return r;
}

/* Writes a numeric attribute (replacing any of that name); count < 0 writes a scalar. */
static inline herr_t percept_h5_attribute_write_numbers(hid_t object, const char *name, hid_t type,
                                                        long long count, const void *values) {
    herr_t r = -1;
    H5E_BEGIN_TRY {
        if (H5Aexists(object, name) > 0) H5Adelete(object, name);
        hsize_t n = (hsize_t)(count < 0 ? 1 : count);
        hid_t space = count < 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, NULL);
        if (space >= 0) {
            hid_t attribute = H5Acreate2(object, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
            if (attribute >= 0) { r = H5Awrite(attribute, type, values); H5Aclose(attribute); }
            H5Sclose(space);
        }
    } H5E_END_TRY;
    return r;
}

/* Writes variable-length UTF-8 strings (what h5py reads back as `str`); count < 0: scalar. */
static inline herr_t percept_h5_attribute_write_strings(hid_t object, const char *name, long long count,
                                                        const char *const *values) {
    herr_t r = -1;
    H5E_BEGIN_TRY {
        if (H5Aexists(object, name) > 0) H5Adelete(object, name);
        hid_t type = H5Tcopy(H5T_C_S1);
        if (type >= 0 && H5Tset_size(type, H5T_VARIABLE) >= 0 && H5Tset_cset(type, H5T_CSET_UTF8) >= 0) {
            hsize_t n = (hsize_t)(count < 0 ? 1 : count);
            hid_t space = count < 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, NULL);
            if (space >= 0) {
                hid_t attribute = H5Acreate2(object, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
                if (attribute >= 0) { r = H5Awrite(attribute, type, values); H5Aclose(attribute); }
                H5Sclose(space);
            }
        }
        if (type >= 0) H5Tclose(type);
    } H5E_END_TRY;
    return r;
}

static inline herr_t percept_h5_attribute_read_numbers(hid_t attribute, hid_t memory_type, void *values) {
    herr_t r; H5E_BEGIN_TRY { r = H5Aread(attribute, memory_type, values); } H5E_END_TRY; return r;
}

/* Reads `count` strings (variable or fixed length) into malloc'ed copies the caller frees. */
static inline herr_t percept_h5_attribute_read_strings(hid_t attribute, long long count, char **out) {
    herr_t r = -1;
    for (long long i = 0; i < count; i++) out[i] = NULL;
    H5E_BEGIN_TRY {
        hid_t file_type = H5Aget_type(attribute);
        hid_t space = H5Aget_space(attribute);
        if (file_type >= 0 && space >= 0 && H5Tget_class(file_type) == H5T_STRING) {
            hid_t memory_type = H5Tcopy(H5T_C_S1);
            if (H5Tis_variable_str(file_type) > 0) {
                H5Tset_size(memory_type, H5T_VARIABLE);
                H5Tset_cset(memory_type, H5Tget_cset(file_type));
                char **pointers = calloc((size_t)(count ? count : 1), sizeof(char *));
                if (pointers && H5Aread(attribute, memory_type, pointers) >= 0) {
                    r = 0;
                    for (long long i = 0; i < count; i++) out[i] = strdup(pointers[i] ? pointers[i] : "");
                    H5Dvlen_reclaim(memory_type, space, H5P_DEFAULT, pointers);
                }
                free(pointers);
            } else {
                size_t size = H5Tget_size(file_type);
                H5Tset_size(memory_type, size);
                H5Tset_strpad(memory_type, H5T_STR_NULLPAD);
                H5Tset_cset(memory_type, H5Tget_cset(file_type));
                char *buffer = calloc((size_t)(count ? count : 1) * size + 1, 1);
                if (buffer && H5Aread(attribute, memory_type, buffer) >= 0) {
                    r = 0;
                    for (long long i = 0; i < count; i++) {
                        out[i] = calloc(size + 1, 1);
                        if (out[i]) memcpy(out[i], buffer + i * size, size);
                    }
                }
                free(buffer);
            }
            H5Tclose(memory_type);
        }
        if (file_type >= 0) H5Tclose(file_type);
        if (space >= 0) H5Sclose(space);
    } H5E_END_TRY;
    return r;
}

/* Number of attributes attached to an object, or -1. */
static inline long long percept_h5_attribute_total(hid_t object) {
    H5O_info_t info; herr_t r;
    H5E_BEGIN_TRY { r = H5Oget_info(object, &info); } H5E_END_TRY;
    return r < 0 ? -1 : (long long)info.num_attrs;
}

/* Name of the index-th attribute in name order, malloc'ed; the caller frees it. */
static inline char *percept_h5_attribute_name(hid_t object, unsigned long long index) {
    char *name = NULL;
    H5E_BEGIN_TRY {
        ssize_t length = H5Aget_name_by_idx(object, ".", H5_INDEX_NAME, H5_ITER_INC, index, NULL, 0, H5P_DEFAULT);
        if (length >= 0) {
            name = malloc((size_t)length + 1);
            if (name && H5Aget_name_by_idx(object, ".", H5_INDEX_NAME, H5_ITER_INC, index, name, (size_t)length + 1, H5P_DEFAULT) < 0) {
                free(name); name = NULL;
            }
        }
    } H5E_END_TRY;
    return name;
}

#endif
