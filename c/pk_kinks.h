/* pk_kinks.h - where a piecewise-linear unit switches along a step
 * (kinks.c): sign changes of polynomials on an interval, through their
 * Bernstein coefficients. Pure numerics, below every other header. */
#ifndef PK_KINKS_H
#define PK_KINKS_H

/* the highest degree of a pre-activation polynomial the exact rule follows
 * (a pre-activation of layer l is of degree l + 1 along a step) */
#define PK_KINK_MAXDEG 32

/* The Bernstein coefficients (deg + 1) on [a, b], reparametrized to [0, 1],
 * of the polynomial sum_k m[k] t^k. */
void pk_bern_from_mono(const double *m, int deg, double a, double b, double *out);
double pk_bern_eval(const double *b, int deg, double u);
/* Points of (a, b) at which p(t) = sum_k m[k] t^k (deg <= PK_KINK_MAXDEG)
 * may change sign: every sign change of p inside (a, b) happens at one of
 * them, to rounding (more points than sign changes may come back, never
 * fewer). Written to out (at most cap), unsorted; the count, or -1 when
 * more than cap were found. */
int pk_kink_roots(const double *m, int deg, double a, double b, double *out, int cap);

#endif
