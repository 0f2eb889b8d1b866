/* SGNS on one stretch of corpus, word2vec.c's way: one (centre, context) pair at a time, in place.
 *
 * Built and loaded by mmlightning/text/native.py (gcc -O3 -march=native -fopenmp-simd, a shared library
 * called through ctypes, which releases the GIL). The maths is sgns.py's, written as word2vec.c runs it:
 * sub-sampling with word2vec's keep probability, a window b ~ U{1..window} per kept centre, pairs within a
 * sentence after discarded words are removed, K negatives from unigram^0.75 (an alias table; a negative equal
 * to the centre is redrawn, as sgns.draw_negatives does), a pair (centre c, context x) trains syn0[x] to
 * predict c against the negatives, the learning rate linear over the stretch from lr0 to lr1, and the
 * sigmoid from word2vec's table (clipped at +-6, as word2vec and gensim).
 *
 * Randomness: one splitmix64 stream per stretch, seeded by the caller from (seed, epoch, stretch), so a
 * stretch trains the same way whichever process runs it. With pairs_cap > 0 nothing is trained: the pairs
 * and negatives the stretch would train are written out instead (the tests compare their statistics with
 * the numpy generator's).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define EXP_TABLE_SIZE 1000
#define MAX_EXP 6

#ifndef MML_SOURCE_HASH
#define MML_SOURCE_HASH "unknown"
#endif

static float sigmoid_table[EXP_TABLE_SIZE];

/* The hash of the source this library was built from (native.py checks it before trusting a cached build). */
const char *mml_source_hash(void) { return MML_SOURCE_HASH; }

/* Fill the sigmoid table; called once per process before any training. */
void mml_init(void) {
    for (int i = 0; i < EXP_TABLE_SIZE; i++) {
        float e = expf((i / (float)EXP_TABLE_SIZE * 2 - 1) * MAX_EXP);
        sigmoid_table[i] = e / (e + 1);
    }
}

static inline uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static inline double uniform01(uint64_t *state) { return (splitmix64(state) >> 11) * (1.0 / 9007199254740992.0); }

static inline int64_t below(uint64_t *state, int64_t n) {  /* uniform in [0, n), n < 2^32 (multiply-shift) */
    return (int64_t)(((splitmix64(state) >> 32) * (uint64_t)n) >> 32);
}

static inline int64_t draw_negative(uint64_t *state, const double *accept, const int64_t *alias, int64_t V) {
    uint64_t r = splitmix64(state);
    int64_t col = (int64_t)(((r >> 32) * (uint64_t)V) >> 32);
    double u = (r & 0xFFFFFFFFULL) * (1.0 / 4294967296.0);
    return u < accept[col] ? col : alias[col];
}

static inline float dot(const float *restrict a, const float *restrict b, int64_t D) {
    float f = 0;
#pragma omp simd reduction(+ : f)
    for (int64_t c = 0; c < D; c++) f += a[c] * b[c];
    return f;
}

static inline void axpy(float g, const float *restrict x, float *restrict y, int64_t D) {
#pragma omp simd
    for (int64_t c = 0; c < D; c++) y[c] += g * x[c];
}

/* -log sigmoid(x), stable for either sign */
static inline double neg_log_sigmoid(double x) { return x > 0 ? log1p(exp(-x)) : -x + log1p(exp(x)); }

/* The rows (centre, context, K negatives) of centres [i0, i1) of a sentence's kept words kept[0..m), into rows. */
static int64_t make_rows(uint64_t *rng, const int32_t *kept, int64_t m, int64_t i0, int64_t i1, int32_t window,
                         int32_t negative, const double *accept, const int64_t *alias, int64_t V, int32_t *rows) {
    int64_t r = 0, w = 2 + negative;
    for (int64_t i = i0; i < i1; i++) {
        int64_t b = 1 + below(rng, window);
        int64_t lo = i - b < 0 ? 0 : i - b, hi = i + b >= m ? m - 1 : i + b;
        for (int64_t j = lo; j <= hi; j++) {
            if (j == i) continue;
            int32_t *row = rows + r * w;
            row[0] = kept[i], row[1] = kept[j];
            for (int32_t k = 0; k < negative; k++) {
                int64_t t = draw_negative(rng, accept, alias, V);
                for (int q = 0; q < 8 && t == kept[i]; q++) t = draw_negative(rng, accept, alias, V);
                row[2 + k] = (int32_t)t;
            }
            r++;
        }
    }
    return r;
}

static inline void prefetch_row(const float *p, int64_t D) {
    for (int64_t c = 0; c < D; c += 16) __builtin_prefetch(p + c, 1, 3);
}

/* One SGD step on one row (centre, context, negatives): syn0[context] predicts the centre against the negatives. */
static inline void train_row(float *restrict syn0, float *restrict syn1, int64_t D, const int32_t *row,
                             int32_t negative, float alpha, float *restrict neu1e, double *loss) {
    float *v = syn0 + (int64_t)row[1] * D;
    memset(neu1e, 0, sizeof(float) * D);
    for (int32_t k = 0; k <= negative; k++) {
        float label = k == 0;
        float *u = syn1 + (int64_t)row[k == 0 ? 0 : 1 + k] * D;
        float f = dot(v, u, D), g;
        if (loss) loss[0] += neg_log_sigmoid(label ? f : -f);
        if (f >= MAX_EXP) g = (label - 1) * alpha;
        else if (f <= -MAX_EXP) g = label * alpha;
        else g = (label - sigmoid_table[(int)((f + MAX_EXP) * (EXP_TABLE_SIZE / (2.0f * MAX_EXP)))]) * alpha;
#pragma omp simd
        for (int64_t c = 0; c < D; c++) {  /* gradient for v with u before its own update (word2vec), then u */
            float uc = u[c];
            neu1e[c] += g * uc;
            u[c] = uc + g * v[c];
        }
    }
    axpy(1.0f, neu1e, v, D);
    if (loss) loss[1] += 1;
}

#define BLOCK 64  /* centres whose rows are drawn at once, then trained (rows ahead are prefetched) */
#define AHEAD 2   /* prefetch distance, in rows */

/* Train (or, with pairs_cap > 0, list) the pairs of one stretch.
 *
 * syn0, syn1: (V, D) float32 tables, updated in place (shared, lock-free, by every worker: Hogwild);
 * ids, sent: (n,) int32 word ids and sentence ids of the stretch; keep: (V,) float64 keep probabilities;
 * accept, alias: (V,) the alias table of unigram^0.75; lr0, lr1: learning rate at the stretch's first and
 * last word; loss_every: add the loss of every loss_every-th pair to loss[0] (count in loss[1]).
 * pairs_out: (pairs_cap, 2 + negative) int64 rows (centre, context, negatives...) when listing.
 * Returns the number of pairs trained (or listed); -1 if pairs_cap was too small, -2 if D is too large,
 * -3 if out of memory.
 */
int64_t mml_train_stretch(float *restrict syn0, float *restrict syn1, int64_t V, int64_t D,
                          const int32_t *ids, const int32_t *sent, int64_t n, const double *keep,
                          const double *accept, const int64_t *alias, int32_t window, int32_t negative,
                          double lr0, double lr1, uint64_t seed, int64_t loss_every, double *loss,
                          int64_t *pairs_out, int64_t pairs_cap) {
    if (D > 4096) return -2;
    float neu1e[4096];
    uint64_t rng = seed;
    const int64_t w = 2 + negative;
    int32_t *kept = malloc(sizeof(int32_t) * (n > 0 ? n : 1));
    int32_t *rows = malloc(sizeof(int32_t) * BLOCK * 2 * window * w);
    if (!kept || !rows) { free(kept); free(rows); return -3; }
    int64_t pairs = 0, start = 0;
    while (start < n) {  /* one sentence segment [start, end) of the stretch at a time */
        int64_t end = start + 1;
        while (end < n && sent[end] == sent[start]) end++;
        int64_t m = 0;
        for (int64_t i = start; i < end; i++)
            if (uniform01(&rng) < keep[ids[i]]) kept[m++] = ids[i];
        float alpha = (float)(lr0 + (lr1 - lr0) * (double)start / (double)n);
        for (int64_t i0 = 0; i0 < m; i0 += BLOCK) {
            int64_t r = make_rows(&rng, kept, m, i0, i0 + BLOCK < m ? i0 + BLOCK : m, window, negative, accept,
                                  alias, V, rows);
            if (pairs_cap > 0) {  /* listing: copy the rows out, train nothing */
                if (pairs + r > pairs_cap) { free(kept); free(rows); return -1; }
                for (int64_t q = 0; q < r * w; q++) pairs_out[pairs * w + q] = rows[q];
                pairs += r;
                continue;
            }
            for (int64_t q = 0; q < r; q++) {
                if (q + AHEAD < r) {
                    const int32_t *next = rows + (q + AHEAD) * w;
                    prefetch_row(syn0 + (int64_t)next[1] * D, D);
                    for (int32_t k = 0; k <= negative; k++) prefetch_row(syn1 + (int64_t)next[k == 0 ? 0 : 1 + k] * D, D);
                }
                int sample = loss_every > 0 && pairs % loss_every == 0;
                double *l = sample ? loss : NULL;
                switch (D) {  /* the usual dimensions with D a constant: loops without tails (~25% faster) */
                    case 50: train_row(syn0, syn1, 50, rows + q * w, negative, alpha, neu1e, l); break;
                    case 100: train_row(syn0, syn1, 100, rows + q * w, negative, alpha, neu1e, l); break;
                    case 200: train_row(syn0, syn1, 200, rows + q * w, negative, alpha, neu1e, l); break;
                    case 300: train_row(syn0, syn1, 300, rows + q * w, negative, alpha, neu1e, l); break;
                    default: train_row(syn0, syn1, D, rows + q * w, negative, alpha, neu1e, l);
                }
                pairs++;
            }
        }
        start = end;
    }
    free(kept);
    free(rows);
    return pairs;
}
