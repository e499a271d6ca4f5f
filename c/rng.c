/* rng.c - the seeded generator behind every random draw: xoshiro256**
 * (Blackman and Vigna) seeded by splitmix64, normals by the polar method. */
#include <math.h>
#include "pk.h"

static uint64_t splitmix64(uint64_t *x)
{
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void pk_rng_seed(pk_rng *r, uint64_t seed)
{
  int i;
  for (i = 0; i < 4; i++)
    r->s[i] = splitmix64(&seed);
  r->has_spare = 0;
  r->spare = 0;
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t pk_rng_next(pk_rng *r)
{
  uint64_t *s = r->s;
  uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return out;
}

double pk_rng_uniform(pk_rng *r)
{
  return (double)(pk_rng_next(r) >> 11) * 0x1.0p-53;
}

double pk_rng_normal(pk_rng *r)
{
  double u, v, s, f;
  if (r->has_spare) {
    r->has_spare = 0;
    return r->spare;
  }
  do {
    u = 2.0 * pk_rng_uniform(r) - 1.0;
    v = 2.0 * pk_rng_uniform(r) - 1.0;
    s = u * u + v * v;
  } while (s >= 1.0 || s == 0.0);
  f = sqrt(-2.0 * log(s) / s);
  r->spare = v * f;
  r->has_spare = 1;
  return u * f;
}

uint64_t pk_rng_below(pk_rng *r, uint64_t n)
{
  /* rejection keeps every value equally likely */
  uint64_t lim, x;
  if (n <= 1) return 0;
  lim = UINT64_MAX - UINT64_MAX % n;
  do x = pk_rng_next(r); while (x >= lim);
  return x % n;
}
