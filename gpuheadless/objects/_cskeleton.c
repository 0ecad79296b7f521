/* The 2D skeleton features of one object, compiled: the same algorithm, order of operations and
 * tie-breaking as tests/skeleton_reference.py (which documents it and stays the reference;
 * tests check both give the same values). Works on the object's box widened by one pixel
 * (clipped to the image), in local indices i = y * w + x; coordinates that enter the results are
 * the image's (x0 + x, y0 + y).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef int64_t i64;

static const int DX[8] = {-1, 0, 1, -1, 1, -1, 0, 1};
static const int DY[8] = {-1, -1, -1, 0, 0, 1, 1, 1};
#define CUT_WEIGHT (0.5 * 1.7976931348623157e308)
#define RELATIVE_PRUNING 0.2
#define MIN_SALIENCE_LENGTH 4.0

static unsigned char REMOVABLE[256]; /* filled from Python (skeleton.REMOVABLE) */

typedef struct {
    int w, h;          /* crop */
    i64 x0, y0;        /* crop origin in the image */
    i64 iw, ih;        /* image */
} Grid;

static int inside(const Grid *g, i64 x, i64 y) { return x >= 0 && y >= 0 && x < g->w && y < g->h; }

/* ---- vector distance (parabola envelopes) ---- */
typedef struct { i64 px, py; double apex, left, center, right; } Parabola;

static double height_of(i64 px, i64 py, int axis)
{
    double total = 0.0;
    total += (double)px * (double)px;
    if (axis >= 1)
        total += (double)py * (double)py;
    return total;
}

/* One scanline: n pixels, inside[k] marks, vectors (vx, vy) in/out with stride. */
static void envelope_line(int n, const unsigned char *mark, i64 mstride, i64 *vx, i64 *vy, i64 vstride, int axis,
                          i64 farx, i64 fary, Parabola *stack, i64 *outx, i64 *outy)
{
    const double w = (double)n;
    int top = 0;
    stack[0] = (Parabola){farx, fary, height_of(farx, fary, axis), 0.0, -1.0, w};
    unsigned char label = mark[0];
    int begin = 0;
    for (int current = 0; current <= n; ++current) {
        i64 px, py;
        if (current < n) {
            if (mark[current * mstride] == label) { px = vx[current * vstride]; py = vy[current * vstride]; }
            else { px = 0; py = 0; }
        } else { px = farx; py = fary; }
        double apex = height_of(px, py, axis);
        for (;;) {
            Parabola *s = &stack[top];
            const double diff = (double)current - s->center;
            double intersection = (double)current + (apex - s->apex - diff * diff) / (2.0 * diff);
            if (intersection < s->left) {
                --top;
                if (top < 0) { intersection = (double)begin; top = -1; }
                else continue;
            } else if (intersection < s->right) {
                s->right = intersection;
            }
            if (intersection < w) {
                ++top;
                stack[top] = (Parabola){px, py, apex, intersection, (double)current, w};
            }
            if (current < n && mark[current * mstride] == label)
                break;
            int entry = 0;
            for (int c = begin; c < current; ++c) {
                while ((double)c >= stack[entry].right) ++entry;
                i64 rx = stack[entry].px, ry = stack[entry].py;
                const i64 offset = (i64)(stack[entry].center - (double)c);
                if (axis == 0) rx = offset; else ry = offset;
                outx[c] = rx; outy[c] = ry;
            }
            if (current == n)
                break;
            begin = current;
            label = mark[current * mstride];
            px = vx[current * vstride]; py = vy[current * vstride];
            apex = height_of(px, py, axis);
            top = 0;
            stack[0] = (Parabola){0, 0, 0.0, (double)begin - 1.0, (double)begin - 1.0, w};
        }
    }
}

/* ---- a min-heap of (cost, counter, index) for the thinning ---- */
typedef struct { i64 cost, counter, index; } Entry;
typedef struct { Entry *a; i64 n, cap; } MinHeap;

static int entry_less(const Entry *x, const Entry *y)
{
    return x->cost < y->cost || (x->cost == y->cost && x->counter < y->counter);
}

static int heap_push(MinHeap *h, Entry e)
{
    if (h->n == h->cap) {
        i64 cap = h->cap ? 2 * h->cap : 64;
        Entry *a = realloc(h->a, (size_t)cap * sizeof(Entry));
        if (!a) return -1;
        h->a = a; h->cap = cap;
    }
    i64 k = h->n++;
    h->a[k] = e;
    while (k > 0 && entry_less(&h->a[k], &h->a[(k - 1) / 2])) {
        Entry t = h->a[k]; h->a[k] = h->a[(k - 1) / 2]; h->a[(k - 1) / 2] = t;
        k = (k - 1) / 2;
    }
    return 0;
}

static Entry heap_pop(MinHeap *h)
{
    Entry top = h->a[0];
    h->a[0] = h->a[--h->n];
    i64 k = 0;
    for (;;) {
        i64 l = 2 * k + 1, r = l + 1, m = k;
        if (l < h->n && entry_less(&h->a[l], &h->a[m])) m = l;
        if (r < h->n && entry_less(&h->a[r], &h->a[m])) m = r;
        if (m == k) break;
        Entry t = h->a[k]; h->a[k] = h->a[m]; h->a[m] = t;
        k = m;
    }
    return top;
}

/* ---- vigra's indexed heap for the shortest paths ---- */
typedef struct { i64 *heap; i64 *position; double *priority; i64 size; } IndexedHeap;

static void ih_swap(IndexedHeap *q, i64 i, i64 j)
{
    i64 t = q->heap[i]; q->heap[i] = q->heap[j]; q->heap[j] = t;
    q->position[q->heap[i]] = i;
    q->position[q->heap[j]] = j;
}

static void ih_up(IndexedHeap *q, i64 k)
{
    while (k > 1 && q->priority[q->heap[k / 2]] > q->priority[q->heap[k]]) { ih_swap(q, k, k / 2); k /= 2; }
}

static void ih_down(IndexedHeap *q, i64 k)
{
    while (2 * k <= q->size) {
        i64 j = 2 * k;
        if (j < q->size && q->priority[q->heap[j]] > q->priority[q->heap[j + 1]]) ++j;
        if (q->priority[q->heap[k]] <= q->priority[q->heap[j]]) break;
        ih_swap(q, k, j);
        k = j;
    }
}

static void ih_push(IndexedHeap *q, i64 item, double value)
{
    if (q->position[item] < 0) {
        q->heap[++q->size] = item;
        q->position[item] = q->size;
        q->priority[item] = value;
        ih_up(q, q->size);
    } else if (value > q->priority[item]) {
        q->priority[item] = value;
        ih_down(q, q->position[item]);
    } else if (value < q->priority[item]) {
        q->priority[item] = value;
        ih_up(q, q->position[item]);
    }
}

static void ih_pop(IndexedHeap *q)
{
    i64 first = q->heap[1];
    ih_swap(q, 1, q->size);
    q->size--;
    ih_down(q, 1);
    q->position[first] = -1;
}

typedef struct {
    Grid g;
    unsigned char *skeleton;  /* skeleton pixels */
    unsigned char *cut;       /* per pixel, bit d: the step towards neighbour d is cut */
    i64 lowx, lowy, highx, highy; /* the skeleton's box (local) */
    IndexedHeap q;
    double *distance;
    i64 *pred;                /* -1: none */
    i64 *order;
    i64 n_order;
} Paths;

static int neighbour(const Grid *g, i64 i, int d, i64 *out)
{
    const i64 x = i % g->w + DX[d], y = i / g->w + DY[d];
    if (!inside(g, x, y)) return 0;
    *out = y * g->w + x;
    return 1;
}

static int direction(const Grid *g, i64 from, i64 to)
{
    const i64 dx = to % g->w - from % g->w, dy = to / g->w - from / g->w;
    for (int d = 0; d < 8; ++d)
        if (DX[d] == dx && DY[d] == dy) return d;
    return -1;
}

static void cut_step(Paths *p, i64 a, i64 b)
{
    int d = direction(&p->g, a, b);
    if (d < 0) return;
    p->cut[a] |= (unsigned char)(1u << d);
    p->cut[b] |= (unsigned char)(1u << (7 - d));
}

static int linked(const Paths *p, i64 a, int d, i64 b)
{
    return p->skeleton[a] && p->skeleton[b] && !(p->cut[a] & (1u << d));
}

/* Settle nodes from source until target (or all); fills order and pred (as skeleton.py). */
static void shortest_paths(Paths *p, i64 source, i64 target, int unbounded)
{
    const Grid *g = &p->g;
    /* reset what the previous search left */
    for (i64 k = 0; k < p->n_order; ++k) p->pred[p->order[k]] = -1;
    p->n_order = 0;
    p->pred[source] = source;
    p->distance[source] = 0.0;
    ih_push(&p->q, source, 0.0);
    while (p->q.size) {
        const i64 top = p->q.heap[1];
        ih_pop(&p->q);
        p->order[p->n_order++] = top;
        if (top == target) break;
        for (int d = 0; d < 8; ++d) {
            i64 q;
            if (!neighbour(g, top, d, &q)) continue;
            if (!linked(p, top, d, q)) {
                const i64 qx = q % g->w, qy = q / g->w;
                const int in_box = qx >= p->lowx && qx <= p->highx && qy >= p->lowy && qy <= p->highy;
                if (unbounded && in_box && p->q.position[q] < 0 && p->pred[q] < 0) {
                    ih_push(&p->q, q, p->distance[top] + CUT_WEIGHT);
                    p->distance[q] = p->distance[top] + CUT_WEIGHT;
                    p->pred[q] = top;
                }
                continue;
            }
            const double step = (DX[d] == 0 || DY[d] == 0) ? 1.0 : sqrt(2.0);
            const double candidate = p->distance[top] + step;
            if (p->q.position[q] >= 0) {
                if (candidate < p->distance[q]) {
                    ih_push(&p->q, q, candidate);
                    p->distance[q] = candidate;
                    p->pred[q] = top;
                }
            } else if (p->pred[q] < 0) {
                ih_push(&p->q, q, candidate);
                p->distance[q] = candidate;
                p->pred[q] = top;
            }
        }
    }
    while (p->q.size) { /* unsettled nodes lose their predecessor */
        const i64 top = p->q.heap[1];
        p->pred[top] = -1;
        ih_pop(&p->q);
    }
}

static double step_length(const Grid *g, i64 a, i64 b)
{
    const double dx = (double)(a % g->w - b % g->w), dy = (double)(a / g->w - b / g->w);
    return sqrt(dx * dx + dy * dy);
}

/* Whether a pixel outside the object lies strictly inside the closed polygon of pixel centres. */
static int encloses_outside_pixel(const Grid *g, const i64 *poly, i64 n, const unsigned char *mask, double *crossings)
{
    i64 miny = poly[0] / g->w, maxy = miny;
    for (i64 k = 1; k < n; ++k) {
        const i64 y = poly[k] / g->w;
        if (y < miny) miny = y;
        if (y > maxy) maxy = y;
    }
    for (i64 y = miny + 1; y < maxy; ++y) {
        i64 m = 0;
        for (i64 k = 0; k < n; ++k) {
            const i64 a = poly[k], b = poly[(k + 1) % n];
            const i64 x1 = a % g->w, y1 = a / g->w, x2 = b % g->w, y2 = b / g->w;
            if ((y1 <= y && y < y2) || (y2 <= y && y < y1))
                crossings[m++] = (double)x1 + (double)((y - y1) * (x2 - x1)) / (double)(y2 - y1);
        }
        /* insertion sort: few crossings per row */
        for (i64 i = 1; i < m; ++i) {
            double v = crossings[i];
            i64 j = i - 1;
            while (j >= 0 && crossings[j] > v) { crossings[j + 1] = crossings[j]; --j; }
            crossings[j + 1] = v;
        }
        for (i64 k = 0; k + 1 < m; k += 2) {
            for (i64 x = (i64)ceil(crossings[k]); x <= (i64)floor(crossings[k + 1]); ++x) {
                int on_polygon = 0;
                for (i64 t = 0; t < n && !on_polygon; ++t)
                    on_polygon = poly[t] == y * g->w + x;
                if (!on_polygon && !(inside(g, x, y) && mask[y * g->w + x]))
                    return 1;
            }
        }
    }
    return 0;
}

typedef struct {
    double diameter, euclidean, total, average;
    i64 branches, holes, cx, cy, t1x, t1y, t2x, t2y;
} Result;

static int skeleton_of(const unsigned char *mask, Grid g, Result *r)
{
    const i64 n = (i64)g.w * g.h;
    int status = -1;
    memset(r, 0, sizeof(*r));
    i64 *vx = calloc((size_t)n, sizeof(i64)), *vy = calloc((size_t)n, sizeof(i64));
    i64 *tx = malloc(sizeof(i64) * (size_t)(g.w > g.h ? g.w : g.h) * 2);
    i64 *squared = calloc((size_t)n, sizeof(i64));
    unsigned char *marked = calloc((size_t)n, 1), *colmark = malloc((size_t)g.h + 1);
    Parabola *stack = malloc(sizeof(Parabola) * (size_t)((g.w > g.h ? g.w : g.h) + 2));
    i64 *ends = malloc(sizeof(i64) * (size_t)n), n_ends = 0;
    i64 *colx = malloc(sizeof(i64) * (size_t)g.h), *coly = malloc(sizeof(i64) * (size_t)g.h);
    MinHeap heap = {0};
    Paths P = {0};
    i64 *line = NULL, *saved_pred = NULL, *parent = NULL, *principal = NULL, *partial = NULL, *poly = NULL;
    double *length = NULL, *salience = NULL, *crossings = NULL;
    unsigned char *is_loop = NULL;
    if (!vx || !vy || !tx || !squared || !marked || !colmark || !stack || !ends || !colx || !coly) goto done;

    const i64 farx = 2 * g.iw, fary = 2 * g.ih;
    /* 1. vector distance: rows (x), then columns (y) */
    for (i64 k = 0; k < n; ++k) { vx[k] = farx; vy[k] = fary; }
    for (int y = 0; y < g.h; ++y) {
        envelope_line(g.w, mask + (i64)y * g.w, 1, vx + (i64)y * g.w, vy + (i64)y * g.w, 1, 0, farx, fary, stack,
                      tx, tx + g.w);
        memcpy(vx + (i64)y * g.w, tx, sizeof(i64) * (size_t)g.w);
        memcpy(vy + (i64)y * g.w, tx + g.w, sizeof(i64) * (size_t)g.w);
    }
    for (int x = 0; x < g.w; ++x) {
        for (int y = 0; y < g.h; ++y) { colmark[y] = mask[(i64)y * g.w + x]; colx[y] = vx[(i64)y * g.w + x]; coly[y] = vy[(i64)y * g.w + x]; }
        envelope_line(g.h, colmark, 1, colx, coly, 1, 1, farx, fary, stack, tx, tx + g.h);
        for (int y = 0; y < g.h; ++y) { vx[(i64)y * g.w + x] = tx[y]; vy[(i64)y * g.w + x] = tx[g.h + y]; }
    }
    for (i64 k = 0; k < n; ++k)
        if (mask[k]) squared[k] = vx[k] * vx[k] + vy[k] * vy[k];

    /* 2. raw skeleton */
    for (int y = 0; y < g.h; ++y) {
        for (int x = 0; x < g.w; ++x) {
            for (int e = 0; e < 2; ++e) {
                const int dx = e == 0 ? 0 : -1, dy = e == 0 ? -1 : 0;
                const int qx = x + dx, qy = y + dy;
                if (qx < 0 || qy < 0) continue;
                const i64 p1 = (i64)y * g.w + x, p2 = (i64)qy * g.w + qx;
                const int a = mask[p1], b = mask[p2];
                if (!a && !b) continue;
                if (a && b) {
                    const i64 dvx = vx[p2] - vx[p1] + dx, dvy = vy[p2] - vy[p1] + dy;
                    if ((llabs(dvx) > llabs(dvy) ? llabs(dvx) : llabs(dvy)) <= 1) continue;
                    const i64 d1 = dvx * dx + dvy * dy;
                    const i64 d2 = dvx * (vx[p1] + vx[p2]) + dvy * (vy[p1] + vy[p2]);
                    const i64 chosen = d1 * d2 <= 0 ? p1 : p2;
                    marked[chosen] = 1;
                    if (squared[chosen] == 4) ends[n_ends++] = chosen;
                } else {
                    if (a && (llabs(vx[p1] - dx) > llabs(vy[p1] - dy) ? llabs(vx[p1] - dx) : llabs(vy[p1] - dy)) > 1)
                        marked[p1] = 1;
                    if (b && (llabs(vx[p2] + dx) > llabs(vy[p2] + dy) ? llabs(vx[p2] + dx) : llabs(vy[p2] + dy)) > 1)
                        marked[p2] = 1;
                }
            }
        }
    }
    for (i64 k = 0; k < n_ends; ++k) {
        const i64 p = ends[k];
        int found = 0;
        for (int d = 0; d < 8 && !found; ++d) {
            i64 q;
            if (neighbour(&g, p, d, &q) && marked[q] && squared[q] < 4) found = 1;
        }
        if (!found) {
            const i64 x = p % g.w + vx[p] / 2, y = p / g.w + vy[p] / 2; /* C division truncates, as int(v / 2) */
            if (inside(&g, x, y)) marked[y * g.w + x] = 1;
        }
    }

    /* 3. thinning */
    i64 counter = 0;
#define INTERIOR(i) ((g.x0 + (i) % g.w) > 0 && (g.x0 + (i) % g.w) < g.iw - 1 && (g.y0 + (i) / g.w) > 0 && (g.y0 + (i) / g.w) < g.ih - 1)
#define CONFIGURATION(i, out) do { int v_ = 0; for (int d_ = 0; d_ < 8; ++d_) { i64 q_; \
        v_ = (v_ << 1) | (neighbour(&g, (i), d_, &q_) && marked[q_]); } (out) = v_; } while (0)
    for (i64 k = 0; k < n; ++k) {
        if (!marked[k] || !INTERIOR(k)) continue;
        int c;
        CONFIGURATION(k, c);
        if (REMOVABLE[c] && heap_push(&heap, (Entry){squared[k], counter++, k})) goto done;
    }
    while (heap.n) {
        const Entry e = heap_pop(&heap);
        int c;
        if (!marked[e.index]) continue;
        CONFIGURATION(e.index, c);
        if (!REMOVABLE[c]) continue;
        marked[e.index] = 0;
        for (int d = 0; d < 8; ++d) {
            i64 q;
            if (!neighbour(&g, e.index, d, &q) || !marked[q] || !INTERIOR(q)) continue;
            CONFIGURATION(q, c);
            if (REMOVABLE[c] && heap_push(&heap, (Entry){squared[q], counter++, q})) goto done;
        }
    }

    /* 4. the graph */
    i64 n_pixels = 0, anchor = -1;
    P.g = g;
    P.lowx = g.w; P.lowy = g.h; P.highx = -1; P.highy = -1;
    for (i64 k = 0; k < n; ++k) {
        if (!marked[k]) continue;
        ++n_pixels; anchor = k;
        const i64 x = k % g.w, y = k / g.w;
        if (x < P.lowx) P.lowx = x;
        if (y < P.lowy) P.lowy = y;
        if (x > P.highx) P.highx = x;
        if (y > P.highy) P.highy = y;
    }
    if (!n_pixels) { status = 0; goto done; }
    P.skeleton = marked;
    P.cut = calloc((size_t)n, 1);
    P.q.heap = malloc(sizeof(i64) * (size_t)(n + 1));
    P.q.position = malloc(sizeof(i64) * (size_t)n);
    P.q.priority = malloc(sizeof(double) * (size_t)n);
    P.distance = malloc(sizeof(double) * (size_t)n);
    P.pred = malloc(sizeof(i64) * (size_t)n);
    P.order = malloc(sizeof(i64) * (size_t)(n + 1));
    line = malloc(sizeof(i64) * (size_t)n);
    saved_pred = malloc(sizeof(i64) * (size_t)n);
    parent = malloc(sizeof(i64) * (size_t)n);
    principal = malloc(sizeof(i64) * (size_t)n);
    partial = calloc((size_t)n, sizeof(i64));
    length = calloc((size_t)n, sizeof(double));
    salience = malloc(sizeof(double) * (size_t)n);
    is_loop = calloc((size_t)n, 1);
    poly = malloc(sizeof(i64) * (size_t)(n + 2));
    crossings = malloc(sizeof(double) * (size_t)(n + 2));
    if (!P.cut || !P.q.heap || !P.q.position || !P.q.priority || !P.distance || !P.pred || !P.order || !line ||
        !saved_pred || !parent || !principal || !partial || !length || !salience || !is_loop || !poly || !crossings)
        goto done;
    for (i64 k = 0; k < n; ++k) { P.q.position[k] = -1; P.pred[k] = -1; parent[k] = -1; principal[k] = -1; salience[k] = 1.0; }

    /* Each search resets the nodes the previous one settled; it resets those it left unsettled itself. */
    shortest_paths(&P, anchor, -1, 0);
    const i64 first = P.order[P.n_order - 1];
    shortest_paths(&P, first, -1, 0);
    const i64 last = P.order[P.n_order - 1];
    i64 n_line = 0;
    line[n_line++] = last;
    while (P.pred[line[n_line - 1]] != line[n_line - 1]) { line[n_line] = P.pred[line[n_line - 1]]; ++n_line; }
    /* the centre: half way along the line */
    i64 centre_at = 0;
    if (n_line > 1) {
        double *cumulative = crossings; /* reuse: n_line <= n */
        cumulative[0] = 0.0;
        for (i64 k = 1; k < n_line; ++k) cumulative[k] = cumulative[k - 1] + step_length(&g, line[k], line[k - 1]);
        const double target = 0.5 * cumulative[n_line - 1];
        i64 k = 0;
        while (cumulative[k] < target) ++k;
        if (k > 0) {
            const double position = (double)(k - 1) + (target - cumulative[k - 1]) / (cumulative[k] - cumulative[k - 1]);
            centre_at = (i64)floor(position + 0.5);
        }
    }
    const i64 centre = line[centre_at];
    shortest_paths(&P, centre, -1, 0);
    const i64 n_order = P.n_order;
    i64 *order = malloc(sizeof(i64) * (size_t)(n_order ? n_order : 1));
    if (!order) goto done;
    memcpy(order, P.order, sizeof(i64) * (size_t)n_order);
    memcpy(saved_pred, P.pred, sizeof(i64) * (size_t)n);
    for (i64 k = 0; k < n; ++k) if (marked[k]) parent[k] = k;

    for (i64 k = n_order - 1; k >= 0; --k) { /* periphery to centre */
        const i64 p1 = order[k], p2 = saved_pred[p1];
        parent[p1] = p2;
        for (int d = 0; d < 4; ++d) {
            i64 p;
            if (!neighbour(&g, p1, d, &p) || !linked(&P, p1, d, p) || p == p2 || saved_pred[p] == p1) continue;
            if (principal[p1] < 0 || principal[p] < 0) continue;
            cut_step(&P, p1, p);
        }
        const double l = length[p1] + step_length(&g, p1, p2);
        if (length[p2] < l) { length[p2] = l; principal[p2] = p1; }
        if (length[p1] >= MIN_SALIENCE_LENGTH) {
            const double s = (length[p1] + 0.5) / sqrt((double)squared[p1]);
            if (s > salience[p1]) salience[p1] = s;
            if (salience[p2] < salience[p1]) salience[p2] = salience[p1];
        }
    }
    for (i64 k = 0; k < n_order; ++k) { /* centre out */
        const i64 p1 = order[k], p2 = parent[p1];
        if (p1 == principal[p2]) { length[p1] = length[p2]; salience[p1] = salience[p2]; }
        else length[p1] += step_length(&g, p2, p1);
        const i64 ax1 = g.x0 + p1 % g.w, ay1 = g.y0 + p1 / g.w, ax2 = g.x0 + p2 % g.w, ay2 = g.y0 + p2 / g.w;
        partial[p1] = partial[p2] + (ax1 * ay2 - ay1 * ax2);
    }
    is_loop[centre] = 1;
    i64 holes = 0;
    double total = 0.0;
    for (i64 k = 0; k < n_order; ++k) {
        const i64 p1 = order[n_order - 1 - k];
        if (principal[p1] < 0) {
            for (int d = 0; d < 8; ++d) {
                i64 p2;
                if (!neighbour(&g, p1, d, &p2)) continue;
                if (parent[p1] == p2 || !linked(&P, p1, d, p2)) continue;
                const i64 ax1 = g.x0 + p1 % g.w, ay1 = g.y0 + p1 / g.w, ax2 = g.x0 + p2 % g.w, ay2 = g.y0 + p2 / g.w;
                if (llabs(partial[p1] - (ax1 * ay2 - ay1 * ax2) - partial[p2]) <= 3) continue;
                cut_step(&P, p1, p2);
                shortest_paths(&P, p1, p2, 1);
                if (P.pred[p2] < 0) continue;
                i64 m = 0;
                poly[m++] = p1;
                poly[m++] = p2;
                i64 p = p2;
                for (;;) {
                    p = P.pred[p];
                    poly[m++] = p;
                    if (p == P.pred[p]) break;
                }
                if (encloses_outside_pixel(&g, poly, m, mask, crossings + 0)) {
                    ++holes;
                    total += length[p1] + length[p2];
                    const double most = salience[p1] > salience[p2] ? salience[p1] : salience[p2];
                    for (i64 t = 1; t < m; ++t) {
                        is_loop[poly[t]] = 1;
                        if (most > salience[poly[t]]) salience[poly[t]] = most;
                    }
                }
            }
            if (!is_loop[p1] && squared[p1] >= 4) {
                i64 p = p1;
                for (;;) {
                    salience[p] = 0.0;
                    for (int d = 0; d < 8; ++d) {
                        i64 q;
                        if (neighbour(&g, p, d, &q)) cut_step(&P, p, q);
                    }
                    if (principal[parent[p]] != p) break;
                    p = parent[p];
                }
            }
        }
        if (is_loop[p1]) is_loop[parent[p1]] = 1;
    }
    const double threshold = RELATIVE_PRUNING * salience[centre];
    i64 branches = 0;
    double branch_length = 0.0;
    for (i64 k = 0; k < n_order; ++k) {
        const i64 p1 = order[k];
        if (principal[p1] < 0 && salience[p1] >= threshold && !is_loop[p1]) {
            ++branches;
            branch_length += length[p1];
            total += length[p1];
        }
    }
    double diameter = 0.0;
    for (i64 k = 1; k < n_line; ++k) diameter += step_length(&g, line[k], line[k - 1]);
    r->diameter = diameter;
    r->total = total;
    r->average = branches ? branch_length / (double)branches : 0.0;
    r->branches = branches;
    r->holes = holes;
    r->cx = g.x0 + centre % g.w; r->cy = g.y0 + centre / g.w;
    r->t1x = g.x0 + line[0] % g.w; r->t1y = g.y0 + line[0] / g.w;
    r->t2x = g.x0 + line[n_line - 1] % g.w; r->t2y = g.y0 + line[n_line - 1] / g.w;
    r->euclidean = step_length(&g, line[n_line - 1], line[0]);
    free(order);
    status = 0;
done:
    free(vx); free(vy); free(tx); free(squared); free(marked); free(colmark); free(stack); free(ends); free(colx);
    free(coly); free(heap.a); free(P.cut); free(P.q.heap); free(P.q.position); free(P.q.priority); free(P.distance);
    free(P.pred); free(P.order); free(line); free(saved_pred); free(parent); free(principal); free(partial);
    free(length); free(salience); free(is_loop); free(poly); free(crossings);
    return status;
}

/* skeleton(mask: bytes (h*w uint8), w, h, x0, y0, image_w, image_h) -> 13-tuple */
static PyObject *py_skeleton(PyObject *self, PyObject *args)
{
    Py_buffer mask;
    int w, h;
    long long x0, y0, iw, ih;
    if (!PyArg_ParseTuple(args, "y*iiLLLL", &mask, &w, &h, &x0, &y0, &iw, &ih))
        return NULL;
    if (mask.len != (Py_ssize_t)w * h || w <= 0 || h <= 0) {
        PyBuffer_Release(&mask);
        PyErr_SetString(PyExc_ValueError, "skeleton: mask size does not match w * h");
        return NULL;
    }
    Grid g = {w, h, x0, y0, iw, ih};
    Result r;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = skeleton_of((const unsigned char *)mask.buf, g, &r);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&mask);
    if (status)
        return PyErr_NoMemory();
    return Py_BuildValue("ddddLLLLLLLLL", r.diameter, r.euclidean, r.total, r.average, (long long)r.branches,
                         (long long)r.holes, (long long)r.cx, (long long)r.cy, (long long)r.t1x, (long long)r.t1y,
                         (long long)r.t2x, (long long)r.t2y, (long long)0);
}

static PyObject *py_set_removable(PyObject *self, PyObject *args)
{
    Py_buffer table;
    if (!PyArg_ParseTuple(args, "y*", &table))
        return NULL;
    if (table.len != 256) {
        PyBuffer_Release(&table);
        PyErr_SetString(PyExc_ValueError, "the removable table has 256 entries");
        return NULL;
    }
    memcpy(REMOVABLE, table.buf, 256);
    PyBuffer_Release(&table);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"skeleton", py_skeleton, METH_VARARGS, "The skeleton features of one object (see skeleton.py)."},
    {"set_removable", py_set_removable, METH_VARARGS, "The thinning's 256-entry table of removable configurations."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cskeleton", NULL, -1, methods};

PyMODINIT_FUNC PyInit__cskeleton(void) { return PyModule_Create(&module); }
