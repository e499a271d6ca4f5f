/* pk_formats.h - a matrix's files beside the container: CSV (csv.c) and
 * NumPy's .npy (npy.c), on memory and streams: what their file functions
 * run, and what the fuzz harnesses call. */
#ifndef PK_FORMATS_H
#define PK_FORMATS_H

#include "pk_base.h"

/* CSV from text in memory (as pk_matrix_read_csv reads a file, gzip
 * included), and to a stream (as pk_matrix_write_csv writes one). */
pk_status pk_matrix_parse_csv(pk_matrix **out, const char *name, const char *text, size_t len,
                              const pk_csv_opts *opts, char **header);
pk_status pk_matrix_emit_csv(FILE *f, const pk_matrix *a, const char *header, int *err);
/* .npy from a file image in memory (what pk_matrix_read_npy runs after
 * pk_read_file, and what the fuzz harness calls), and to a stream. */
pk_status pk_matrix_read_npy_mem(pk_matrix **out, const char *name, const unsigned char *buf,
                                 size_t len);
pk_status pk_matrix_emit_npy(FILE *f, const pk_matrix *a, int *err);

#endif
