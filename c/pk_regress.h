/* pk_regress.h - kernel regressors inside (regress.c): the model file's
 * payload and its loader on memory, for the fuzz harness. */
#ifndef PK_REGRESS_H
#define PK_REGRESS_H

#include "pk_file.h"

pk_status pk_regressor_load_mem(pk_regressor **out, const char *name, const unsigned char *buf,
                                size_t len);
pk_status pk_regressor_write_payload(pk_writer *w, const void *r);
const pk_matrix *pk_regressor_X(const pk_regressor *r);   /* its training inputs */

#endif
