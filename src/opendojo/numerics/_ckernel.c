/* CFloat encode / decode / fake-quantize kernels (CPU).
 *
 * Branchless integer code on the IEEE bits, written so GCC auto-vectorises the element loops; the hot
 * loops are compiled twice (AVX2 and baseline x86-64) with target_clones and picked at load time, so
 * the build stays portable (no -march=native). Large arrays are split over a persistent pthread pool (the
 * caller passes torch.get_num_threads()); every element's result depends only on its value and its flat
 * index, so the split never changes a bit.
 *
 * The arithmetic is the integer formulation of opendojo/numerics/reference.py:
 *   sig = significand, s = dropped bits, q = sig >> s + rounding increment,
 *   code = ((e - 1) << M) + q, saturated, sign added.
 * Stochastic rounding adds 16 random bits (stochastic.py's counter-based hash of (seed, index))
 * below the kept LSB and truncates.
 *
 * Called from Python with raw addresses (numpy .ctypes.data, torch .data_ptr()); the GIL is released.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define HOT __attribute__((target_clones("avx2", "default")))
#else
#define HOT
#endif

enum { NEAREST = 0, STOCHASTIC = 1, TOWARD_ZERO = 2 };

typedef struct {
    const void *src;
    void *dst;
    const float *lut;
    int64_t n, offset;
    int M, bias, is_signed, sign_shift, mode;
    uint32_t max_mag, k1, k2;
    int want_flags;      /* count exception flags (a slower, non-vectorised loop) */
    uint64_t tiny_bits;  /* |x| bits below this (and nonzero) = denormal in x's own input format */
} job_t;

/* flag counters, in this order everywhere (flags.py FLAG_NAMES) */
enum { F_INVALID = 0, F_DENORMAL = 1, F_OVERFLOW = 2, F_UNDERFLOW = 3, N_FLAGS = 4 };

static inline uint32_t mix32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

/* hash key of the high half of the index, constant over a block of 2**32 indices */
static inline uint32_t hi_key(const job_t *j, uint64_t idx) {
    return j->k2 + (uint32_t)(idx >> 32) * 0x9E3779B9U;
}

#define AI inline __attribute__((always_inline))

/* The unsaturated magnitude code of |x| (float32 bits a): ((e - 1) << M) + q, with q the rounded quotient.
 * GCC's vectoriser is picky: unsigned compares in the rounding increment and a second clamped variable
 * shift each made it give up, hence the shapes below. */
static AI uint32_t mag_f32(uint32_t a, int M, int bias, int mode, uint32_t rnd, uint32_t *q_out,
                           int32_t *e_out, uint32_t *inexact) {
    int32_t f = (int32_t)(a >> 23);
    uint32_t sig = (a & 0x7fffffu) | ((uint32_t)(f != 0) << 23);
    int32_t fe = f > 1 ? f : 1;
    int32_t e = f - 127 + bias;
    e = e > 1 ? e : 1;
    int32_t s = e - fe - bias - M + 150; /* dropped bits, >= 1 */
    int32_t s1 = s < 31 ? s : 31;        /* sig < 2**24: past 31 only zeros remain */
    uint32_t q = sig >> s1;
    if (inexact) *inexact = sig != (q << s1);
    if (mode == NEAREST) {
        /* ties to even: add half - 1 plus the kept LSB, then truncate (cannot wrap: sig < 2**24) */
        q = (sig + ((1u << (s1 - 1)) - 1u) + (q & 1u)) >> s1;
    } else if (mode == STOCHASTIC) {
        /* floor(sig / 2**s + rnd / 2**16), exactly, in 64 bits; beyond s = 40 the result is 0 */
        int32_t s3 = s < 40 ? s : 40;
        q = (uint32_t)((((uint64_t)sig << 16) + ((uint64_t)rnd << s3)) >> (s3 + 16));
    }
    *q_out = q;
    *e_out = e;
    return ((uint32_t)(e - 1) << M) + q;
}

/* One element, float32 bits -> code. */
static AI uint32_t enc_f32(uint32_t u, int M, int bias, uint32_t max_mag, int is_signed, int sign_shift,
                           int mode, uint32_t rnd, uint64_t *pre, uint32_t *inexact) {
    uint32_t a = u & 0x7fffffffu;
    uint32_t neg = u >> 31;
    uint32_t q;
    int32_t e;
    uint32_t mag = mag_f32(a, M, bias, mode, rnd, &q, &e, inexact);
    if (pre) *pre = mag;
    mag = mag < max_mag ? mag : max_mag;
    uint32_t nan = a > 0x7f800000u;
    mag = nan ? max_mag : mag;
    neg &= nan ^ 1u;
    if (is_signed) return mag | (neg << sign_shift);
    return neg ? 0u : mag;
}

/* One element, float64 bits -> code (rounds from the float64 bits directly, never via float32). */
static AI uint32_t enc_f64(uint64_t u, int M, int bias, uint32_t max_mag, int is_signed, int sign_shift,
                           int mode, uint32_t rnd, uint64_t *pre, uint32_t *inexact) {
    uint64_t a = u & 0x7fffffffffffffffull;
    uint32_t neg = (uint32_t)(u >> 63);
    int64_t f = (int64_t)(a >> 52);
    uint64_t sig = (a & 0xfffffffffffffull) | ((uint64_t)(f != 0) << 52);
    int64_t fe = f > 1 ? f : 1;
    int64_t e = f - 1023 + bias;
    e = e > 1 ? e : 1;
    int64_t s = e - fe - bias - M + 1075; /* >= 1 */
    int64_t s1 = s < 63 ? s : 63;
    uint64_t q = sig >> s1;
    uint64_t low = sig - (q << s1);
    if (inexact) *inexact = low != 0;
    if (mode == NEAREST) {
        q = (sig + ((1ull << (s1 - 1)) - 1u) + (q & 1u)) >> s1;
    } else if (mode == STOCHASTIC) {
        /* carry of (top 16 dropped bits + rnd); the bits below those cannot change it */
        int64_t s2 = s - 16;
        int64_t sr = s2 < 0 ? 0 : (s2 < 63 ? s2 : 63);
        int64_t sl = s2 < 0 ? -s2 : 0;
        uint64_t y = (low >> sr) << sl;
        q += (y + rnd) >> 16;
    }
    /* e is at most 2047 - 1023 + 63 and q < 2**54, so this cannot wrap */
    uint64_t mag64 = ((uint64_t)(e - 1) << M) + q;
    if (pre) *pre = mag64;
    uint32_t mag = mag64 < max_mag ? (uint32_t)mag64 : max_mag;
    uint32_t nan = a > 0x7ff0000000000000ull;
    mag = nan ? max_mag : mag;
    neg &= nan ^ 1u;
    if (is_signed) return mag | (neg << sign_shift);
    return neg ? 0u : mag;
}

static AI float float_of(uint32_t u) {
    float f;
    __builtin_memcpy(&f, &u, 4);
    return f;
}

static AI uint32_t bits_of(float f) {
    uint32_t u;
    __builtin_memcpy(&u, &f, 4);
    return u;
}

/* One element, float32 bits -> the float32 bits of its CFloat value (fake-quantize without a code):
 * the same q and e as enc_f32, then value = q * 2**(e - bias - M), built with an int->float conversion
 * and a multiply by a power of two, both exact (q <= 2**(M+1), and the power is a normal float32 for
 * every bias and format). No table gather, so the loop vectorises like the encode loop. maxv: the bits
 * of the format's largest value at this bias (saturation, NaN). */
static AI uint32_t fq_f32(uint32_t u, int M, int bias, uint32_t max_mag, uint32_t maxv, int is_signed,
                          int mode, uint32_t rnd) {
    uint32_t a = u & 0x7fffffffu;
    uint32_t neg = u >> 31;
    uint32_t q;
    int32_t e;
    uint32_t mag = mag_f32(a, M, bias, mode, rnd, &q, &e, NULL);
    /* Selections by bit masks, not ?: on a float-derived value: GCC will not if-convert the latter. */
    uint32_t nan = a > 0x7f800000u;
    uint32_t sat = 0u - ((uint32_t)(mag > max_mag) | nan);
    int32_t ex = e - bias - M + 127; /* >= 55; clamped where the lane saturates anyway */
    ex = ex < 254 ? ex : 254;
    uint32_t bits = (maxv & sat) | (bits_of((float)(int32_t)q * float_of((uint32_t)ex << 23)) & ~sat);
    neg &= nan ^ 1u;
    uint32_t keep = 0u - (uint32_t)(is_signed | (neg ^ 1u)); /* UHP: a negative input becomes +0 */
    return (bits | (neg << 31)) & keep;
}

/* Elements are processed in blocks: the random bits of a block first (its own vectorised loop),
 * then the codes, then (fake-quantize) the table lookup. Blocks never cross a multiple of 2**32 in
 * the flat index, so the low index half is a plain uint32 counter inside a block. */
#define BLOCK 2048

/* elements of the next block starting at flat index idx0, with `left` elements left in the range */
static AI int64_t block_len(uint64_t idx0, int64_t left) {
    int64_t room = (int64_t)(0x100000000ull - (idx0 & 0xffffffffull));
    int64_t len = left < BLOCK ? left : BLOCK;
    return len < room ? len : room;
}

static AI void random_block(uint32_t *restrict r, int n, uint32_t lo0, uint32_t k1, uint32_t kh) {
    for (int k = 0; k < n; k++) r[k] = mix32(mix32((lo0 + (uint32_t)k) ^ k1) ^ kh) >> 16;
}

/* the flag-counting loop: per element, the same code plus the four flag conditions of reference.py.
 * Counters are 32-bit per block (a block has at most BLOCK elements) so the loop stays vectorisable. */
#define FLAGS_BLOCK(NAME, UIN_T, ENC, OUT_T, NAN_BITS)                                                     \
    static AI void NAME##_flags(const UIN_T *restrict s, OUT_T *restrict d, int n, const job_t *j, int mode, \
                                const uint32_t *restrict r, int64_t *restrict counts) {                    \
        const int M = j->M, bias = j->bias, sg = j->is_signed, sh = j->sign_shift;                         \
        const uint32_t mm = j->max_mag, min_normal = 1u << M;                                              \
        const UIN_T absmask = ~(UIN_T)0 >> 1, inf = (UIN_T)(NAN_BITS), tiny = (UIN_T)j->tiny_bits;         \
        uint32_t inv = 0, den = 0, ovf = 0, unf = 0;                                                       \
        for (int k = 0; k < n; k++) {                                                                      \
            uint64_t pre;                                                                                  \
            uint32_t inexact;                                                                              \
            UIN_T u = s[k];                                                                                \
            uint32_t code = ENC(u, M, bias, mm, sg, sh, mode, mode == STOCHASTIC ? r[k] : 0, &pre,         \
                                &inexact);                                                                 \
            d[k] = (OUT_T)code;                                                                            \
            UIN_T a = u & absmask;                                                                         \
            uint32_t nz = a != 0, negative = u > absmask;                                                  \
            uint32_t nan = a > inf;                                                                        \
            uint32_t uhp_neg = (uint32_t)(sg == 0) & negative & nz & (nan ^ 1u);                           \
            uint32_t live = (uint32_t)(a < inf) & (uhp_neg ^ 1u);                                          \
            uint32_t mag = code & mm;                                                                      \
            uint32_t small = mag < min_normal;                                                             \
            inv += nan | uhp_neg;                                                                          \
            den += (nz & (uint32_t)(a < tiny)) | (live & (uint32_t)(mag != 0) & small);                    \
            ovf += live & (uint32_t)(pre > mm);                                                            \
            unf += live & nz & small & inexact;                                                            \
        }                                                                                                  \
        counts[F_INVALID] += inv;                                                                          \
        counts[F_DENORMAL] += den;                                                                         \
        counts[F_OVERFLOW] += ovf;                                                                         \
        counts[F_UNDERFLOW] += unf;                                                                        \
    }

#define ENCODE_BLOCK(NAME, UIN_T, ENC, OUT_T, NAN_BITS)                                                    \
    FLAGS_BLOCK(NAME, UIN_T, ENC, OUT_T, NAN_BITS)                                                         \
    static AI void NAME(const UIN_T *restrict s, OUT_T *restrict d, int n, const job_t *j, int mode,       \
                        const uint32_t *restrict r, int64_t *restrict counts) {                            \
        const int M = j->M, bias = j->bias, sg = j->is_signed, sh = j->sign_shift;                         \
        const uint32_t mm = j->max_mag;                                                                    \
        if (j->want_flags) {                                                                               \
            if (mode == STOCHASTIC)                                                                        \
                NAME##_flags(s, d, n, j, STOCHASTIC, r, counts);                                           \
            else if (mode == NEAREST)                                                                      \
                NAME##_flags(s, d, n, j, NEAREST, r, counts);                                              \
            else                                                                                           \
                NAME##_flags(s, d, n, j, TOWARD_ZERO, r, counts);                                          \
        } else if (mode == STOCHASTIC)                                                                     \
            for (int k = 0; k < n; k++)                                                                    \
                d[k] = (OUT_T)ENC(s[k], M, bias, mm, sg, sh, STOCHASTIC, r[k], NULL, NULL);                \
        else if (mode == NEAREST)                                                                          \
            for (int k = 0; k < n; k++) d[k] = (OUT_T)ENC(s[k], M, bias, mm, sg, sh, NEAREST, 0, NULL, NULL); \
        else                                                                                               \
            for (int k = 0; k < n; k++)                                                                    \
                d[k] = (OUT_T)ENC(s[k], M, bias, mm, sg, sh, TOWARD_ZERO, 0, NULL, NULL);                  \
    }

ENCODE_BLOCK(enc_block_f32_u8, uint32_t, enc_f32, uint8_t, 0x7f800000u)
ENCODE_BLOCK(enc_block_f32_u16, uint32_t, enc_f32, uint16_t, 0x7f800000u)
ENCODE_BLOCK(enc_block_f64_u8, uint64_t, enc_f64, uint8_t, 0x7ff0000000000000ull)
ENCODE_BLOCK(enc_block_f64_u16, uint64_t, enc_f64, uint16_t, 0x7ff0000000000000ull)

#define GATHER_BLOCK(NAME, CODE_T, OUT_T)                                                                  \
    static AI void NAME(const CODE_T *restrict c, OUT_T *restrict d, int n, const float *restrict lut) {   \
        for (int k = 0; k < n; k++) d[k] = (OUT_T)lut[(int32_t)c[k]];                                      \
    }

GATHER_BLOCK(gather_u8_f32, uint8_t, float)
GATHER_BLOCK(gather_u16_f32, uint16_t, float)
GATHER_BLOCK(gather_u8_f64, uint8_t, double)
GATHER_BLOCK(gather_u16_f64, uint16_t, double)

/* encode: src floats -> dst codes; fake-quantize (GATHER != 0): codes in a block buffer, then the table */
#define RANGE_LOOP(NAME, UIN_T, CODE_T, ENCBLK, MODE, OUT_T, GATHER, IS_FQ)                                       \
    HOT static void NAME(const job_t *j, int64_t i0, int64_t i1, int64_t *counts) {                        \
        uint32_t rnd[BLOCK];                                                                               \
        CODE_T codes[BLOCK];                                                                               \
        const UIN_T *src = (const UIN_T *)j->src;                                                          \
        while (i0 < i1) {                                                                                  \
            uint64_t idx0 = (uint64_t)(j->offset + i0);                                                    \
            int64_t len = block_len(idx0, i1 - i0);                                                        \
            if (MODE == STOCHASTIC) random_block(rnd, (int)len, (uint32_t)idx0, j->k1, hi_key(j, idx0));   \
            if (IS_FQ) {                                                                                   \
                ENCBLK(src + i0, codes, (int)len, j, MODE, rnd, counts);                                   \
                GATHER(codes, (OUT_T *)j->dst + i0, (int)len, j->lut);                                     \
            } else {                                                                                       \
                ENCBLK(src + i0, (CODE_T *)j->dst + i0, (int)len, j, MODE, rnd, counts);                   \
            }                                                                                              \
            i0 += len;                                                                                     \
        }                                                                                                  \
    }

#define RANGE_MODES(PFX, UIN_T, CODE_T, ENCBLK, OUT_T, GATHER, IS_FQ)                                            \
    RANGE_LOOP(PFX##_rn, UIN_T, CODE_T, ENCBLK, NEAREST, OUT_T, GATHER, IS_FQ)                             \
    RANGE_LOOP(PFX##_sr, UIN_T, CODE_T, ENCBLK, STOCHASTIC, OUT_T, GATHER, IS_FQ)                          \
    RANGE_LOOP(PFX##_tz, UIN_T, CODE_T, ENCBLK, TOWARD_ZERO, OUT_T, GATHER, IS_FQ)

#define NO_GATHER(c, d, n, lut) ((void)0)
RANGE_MODES(enc_f32_u8, uint32_t, uint8_t, enc_block_f32_u8, uint8_t, NO_GATHER, 0)
RANGE_MODES(enc_f32_u16, uint32_t, uint16_t, enc_block_f32_u16, uint16_t, NO_GATHER, 0)
RANGE_MODES(enc_f64_u8, uint64_t, uint8_t, enc_block_f64_u8, uint8_t, NO_GATHER, 0)
RANGE_MODES(enc_f64_u16, uint64_t, uint16_t, enc_block_f64_u16, uint16_t, NO_GATHER, 0)
RANGE_MODES(fq_f32_u8, uint32_t, uint8_t, enc_block_f32_u8, float, gather_u8_f32, 1)
RANGE_MODES(fq_f32_u16, uint32_t, uint16_t, enc_block_f32_u16, float, gather_u16_f32, 1)
RANGE_MODES(fq_f64_u8, uint64_t, uint8_t, enc_block_f64_u8, double, gather_u8_f64, 1)
RANGE_MODES(fq_f64_u16, uint64_t, uint16_t, enc_block_f64_u16, double, gather_u16_f64, 1)

/* fake-quantize float32 -> float32 without flags: fq_f32 per element, no code buffer, no gather.
 * With flags it hands over to the encode-and-gather loop FALLBACK, which counts them. */
#define FQ_DIRECT(NAME, MODE, FALLBACK)                                                                    \
    HOT static void NAME(const job_t *j, int64_t i0, int64_t i1, int64_t *counts) {                        \
        if (j->want_flags) {                                                                               \
            FALLBACK(j, i0, i1, counts);                                                                   \
            return;                                                                                        \
        }                                                                                                  \
        const int M = j->M, bias = j->bias, sg = j->is_signed;                                             \
        const uint32_t mm = j->max_mag;                                                                    \
        uint32_t top;                                                                                      \
        __builtin_memcpy(&top, &j->lut[mm], 4);                                                            \
        const uint32_t *restrict src = (const uint32_t *)j->src;                                           \
        uint32_t *restrict dst = (uint32_t *)j->dst;                                                       \
        if (MODE != STOCHASTIC) {                                                                          \
            for (int64_t k = i0; k < i1; k++) dst[k] = fq_f32(src[k], M, bias, mm, top, sg, MODE, 0);      \
            return;                                                                                        \
        }                                                                                                  \
        uint32_t rnd[BLOCK];                                                                               \
        while (i0 < i1) {                                                                                  \
            uint64_t idx0 = (uint64_t)(j->offset + i0);                                                    \
            int64_t len = block_len(idx0, i1 - i0);                                                        \
            random_block(rnd, (int)len, (uint32_t)idx0, j->k1, hi_key(j, idx0));                           \
            const uint32_t *restrict s = src + i0;                                                         \
            uint32_t *restrict d = dst + i0;                                                               \
            for (int k = 0; k < (int)len; k++) d[k] = fq_f32(s[k], M, bias, mm, top, sg, MODE, rnd[k]);    \
            i0 += len;                                                                                     \
        }                                                                                                  \
    }

FQ_DIRECT(fqd_f32_u8_rn, NEAREST, fq_f32_u8_rn)
FQ_DIRECT(fqd_f32_u8_sr, STOCHASTIC, fq_f32_u8_sr)
FQ_DIRECT(fqd_f32_u8_tz, TOWARD_ZERO, fq_f32_u8_tz)
FQ_DIRECT(fqd_f32_u16_rn, NEAREST, fq_f32_u16_rn)
FQ_DIRECT(fqd_f32_u16_sr, STOCHASTIC, fq_f32_u16_sr)
FQ_DIRECT(fqd_f32_u16_tz, TOWARD_ZERO, fq_f32_u16_tz)

#define DECODE_RANGE(NAME, CODE_T, GATHER)                                                                 \
    HOT static void NAME(const job_t *j, int64_t i0, int64_t i1, int64_t *counts) {                        \
        (void)counts;                                                                                      \
        for (; i0 < i1; i0 += BLOCK) {                                                                     \
            int64_t len = i1 - i0 < BLOCK ? i1 - i0 : BLOCK;                                               \
            GATHER((const CODE_T *)j->src + i0, (float *)j->dst + i0, (int)len, j->lut);                   \
        }                                                                                                  \
    }

DECODE_RANGE(dec_u8, uint8_t, gather_u8_f32)
DECODE_RANGE(dec_u16, uint16_t, gather_u16_f32)

typedef void (*range_fn)(const job_t *, int64_t, int64_t, int64_t *);

/* op numbers shared with _native.py */
static const range_fn OPS[][3] = {
    {enc_f32_u8_rn, enc_f32_u8_sr, enc_f32_u8_tz},    /* 0 */
    {enc_f32_u16_rn, enc_f32_u16_sr, enc_f32_u16_tz}, /* 1 */
    {enc_f64_u8_rn, enc_f64_u8_sr, enc_f64_u8_tz},    /* 2 */
    {enc_f64_u16_rn, enc_f64_u16_sr, enc_f64_u16_tz}, /* 3 */
    {fqd_f32_u8_rn, fqd_f32_u8_sr, fqd_f32_u8_tz},    /* 4 */
    {fqd_f32_u16_rn, fqd_f32_u16_sr, fqd_f32_u16_tz}, /* 5 */
    {fq_f64_u8_rn, fq_f64_u8_sr, fq_f64_u8_tz},       /* 6 */
    {fq_f64_u16_rn, fq_f64_u16_sr, fq_f64_u16_tz},    /* 7 */
    {dec_u8, dec_u8, dec_u8},                         /* 8 */
    {dec_u16, dec_u16, dec_u16},                      /* 9 */
};
#define N_OPS ((int)(sizeof(OPS) / sizeof(OPS[0])))

/* Work is handed out in chunks of CHUNK elements (a multiple of 64: cache-line aligned starts). Below
 * 2 * CHUNK elements a call runs on the calling thread alone: waking a worker costs more than it saves. */
#define CHUNK (1 << 15)
#define MAX_THREADS 64

/* A persistent pool: workers are started once (lazily, up to the largest thread count asked for) and
 * sleep on a condition variable between calls. The calling thread takes chunks too, from the same
 * counter, so a worker the OS has not scheduled yet (a loaded machine, or torch's OpenMP threads still
 * spinning on the other core) never holds the call up: the caller simply does that share itself. Which
 * thread computes a chunk never changes a bit, since every element depends on its value and index only. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t wake, finished;
    pthread_mutex_t busy; /* one call at a time uses the pool; a concurrent call runs alone */
    int n_workers;
    uint64_t generation;  /* bumped per call, so a late worker never takes a chunk of the next call */
    const job_t *job;
    range_fn fn;
    int64_t next, n_chunks, done, helpers, max_helpers;
    int64_t counts[N_FLAGS];
} pool_t;

static pool_t POOL = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
                      PTHREAD_MUTEX_INITIALIZER, 0, 0, NULL, NULL, 0, 0, 0, 0, 0, {0, 0, 0, 0}};

/* Take and run chunks of the current call until none is left; called with POOL.mu held, returns so. */
static void drain(uint64_t gen) {
    while (POOL.generation == gen && POOL.next < POOL.n_chunks) {
        int64_t c = POOL.next++, n = POOL.job->n;
        const job_t *job = POOL.job;
        range_fn fn = POOL.fn;
        int64_t counts[N_FLAGS] = {0, 0, 0, 0};
        int64_t i0 = c * CHUNK, i1 = i0 + CHUNK < n ? i0 + CHUNK : n;
        pthread_mutex_unlock(&POOL.mu);
        fn(job, i0, i1, counts);
        pthread_mutex_lock(&POOL.mu);
        for (int f = 0; f < N_FLAGS; f++) POOL.counts[f] += counts[f];
        if (++POOL.done == POOL.n_chunks) pthread_cond_signal(&POOL.finished);
    }
}

/* `arg`: the generation before the call that started the worker, so it helps with that call too. */
static void *worker(void *arg) {
    uint64_t seen = (uint64_t)(uintptr_t)arg;
    pthread_mutex_lock(&POOL.mu);
    for (;;) {
        while (POOL.generation == seen) pthread_cond_wait(&POOL.wake, &POOL.mu);
        seen = POOL.generation;
        if (POOL.job != NULL && POOL.helpers < POOL.max_helpers) {
            POOL.helpers++;
            drain(seen);
        }
    }
    return NULL;
}

/* Start workers until there are `want` (best effort: a failed start leaves fewer). Holds POOL.mu. */
static void grow_pool(int want) {
    while (POOL.n_workers < want) {
        pthread_t tid;
        if (pthread_create(&tid, NULL, worker, (void *)(uintptr_t)POOL.generation) != 0) break;
        pthread_detach(tid);
        POOL.n_workers++;
    }
}

/* A forked child has none of the parent's threads: forget them, and the locks they may have held. */
static void pool_after_fork(void) {
    pthread_mutex_init(&POOL.mu, NULL);
    pthread_mutex_init(&POOL.busy, NULL);
    pthread_cond_init(&POOL.wake, NULL);
    pthread_cond_init(&POOL.finished, NULL);
    POOL.n_workers = 0;
    POOL.job = NULL;
}

static void run_parallel(const job_t *job, range_fn fn, int nthreads, int64_t *counts) {
    int64_t n_chunks = (job->n + CHUNK - 1) / CHUNK;
    int64_t t = nthreads < MAX_THREADS ? nthreads : MAX_THREADS;
    if (t > n_chunks) t = n_chunks;
    if (t <= 1 || n_chunks < 2 || pthread_mutex_trylock(&POOL.busy) != 0) {
        fn(job, 0, job->n, counts);
        return;
    }
    pthread_mutex_lock(&POOL.mu);
    grow_pool((int)t - 1);
    POOL.job = job;
    POOL.fn = fn;
    POOL.next = POOL.done = POOL.helpers = 0;
    POOL.n_chunks = n_chunks;
    POOL.max_helpers = t - 1; /* at most the threads asked for, even if the pool is larger */
    for (int f = 0; f < N_FLAGS; f++) POOL.counts[f] = 0;
    uint64_t gen = ++POOL.generation;
    pthread_cond_broadcast(&POOL.wake);
    drain(gen);
    while (POOL.done < POOL.n_chunks) pthread_cond_wait(&POOL.finished, &POOL.mu);
    for (int f = 0; f < N_FLAGS; f++) counts[f] += POOL.counts[f];
    POOL.job = NULL;
    pthread_mutex_unlock(&POOL.mu);
    pthread_mutex_unlock(&POOL.busy);
}

static PyObject *py_run(PyObject *self, PyObject *args) {
    (void)self;
    int op, M, bias, is_signed, sign_shift, mode, nthreads, want_flags;
    unsigned long long src, dst, lut, tiny_bits;
    long long n, offset;
    unsigned int max_mag, k1, k2;
    if (!PyArg_ParseTuple(args, "iKKKLLiiiiiIIIiiK", &op, &src, &dst, &lut, &n, &offset, &M, &bias,
                          &is_signed, &sign_shift, &mode, &max_mag, &k1, &k2, &nthreads, &want_flags,
                          &tiny_bits))
        return NULL;
    if (op < 0 || op >= N_OPS || mode < 0 || mode > 2 || n < 0 || M < 0 || M > 16 || bias < 0 ||
        bias > 63) {
        PyErr_SetString(PyExc_ValueError, "_ckernel.run: argument out of range");
        return NULL;
    }
    job_t job = {(const void *)(uintptr_t)src, (void *)(uintptr_t)dst, (const float *)(uintptr_t)lut,
                 n, offset, M, bias, is_signed, sign_shift, mode, max_mag, k1, k2, want_flags != 0,
                 tiny_bits};
    range_fn fn = OPS[op][mode];
    int64_t counts[N_FLAGS] = {0, 0, 0, 0};
    Py_BEGIN_ALLOW_THREADS run_parallel(&job, fn, nthreads, counts);
    Py_END_ALLOW_THREADS if (!want_flags) Py_RETURN_NONE;
    return Py_BuildValue("(LLLL)", (long long)counts[0], (long long)counts[1], (long long)counts[2],
                         (long long)counts[3]);
}

/* Ask for transparent huge pages on a fresh output buffer before its first touch: a new 64 MB output
 * otherwise costs 16,384 page faults, which dominate a memory-bound kernel. Only the 2 MB-aligned
 * interior is advised; failure (THP off, not anonymous memory) is harmless and ignored. */
static PyObject *py_advise_huge(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long ptr, nbytes;
    if (!PyArg_ParseTuple(args, "KK", &ptr, &nbytes)) return NULL;
#ifdef MADV_HUGEPAGE
    const unsigned long long huge = 2ull << 20;
    unsigned long long lo = (ptr + huge - 1) & ~(huge - 1), hi = (ptr + nbytes) & ~(huge - 1);
    if (hi > lo) (void)madvise((void *)(uintptr_t)lo, (size_t)(hi - lo), MADV_HUGEPAGE);
#endif
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"advise_huge", py_advise_huge, METH_VARARGS, "advise_huge(address, nbytes): MADV_HUGEPAGE, best effort"},
    {"run", py_run, METH_VARARGS,
     "run(op, src, dst, lut, n, offset, M, bias, signed, sign_shift, mode, max_mag, k1, k2, nthreads, "
     "want_flags, tiny_bits) -> None or (invalid, denormal, overflow, underflow) counts"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ckernel", "CFloat CPU kernels", -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__ckernel(void) {
    pthread_atfork(NULL, NULL, pool_after_fork);
    return PyModule_Create(&module);
}
