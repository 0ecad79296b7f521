/*
 * The neighbourhood of one object (spec object-classification.md §3.4): the pixels of a box whose
 * distance to the object, with per-axis pitch, is below `reach`, minus the object itself; their
 * intensities in vigra's scan order (x fastest).
 *
 * The distance is exact: squared distances sum integers (pitch^2 * delta^2), computed with the
 * separable lower-envelope transform of Felzenszwalb and Huttenlocher (one pass per axis), and
 * "sqrt(d2) < reach" is decided as "d2 < reach^2", which is the same for integers. An axis whose
 * pitch^2 alone reaches reach^2 needs no pass: no other slice along it can be within reach.
 * The GIL is released, so several objects are computed at once on Python threads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* d[i * stride] for i < n := min_q (w (i - q)^2 + d[q * stride]), in place; scratch: 4n + 1 */
static void envelope_pass(double *d, Py_ssize_t n, Py_ssize_t stride, double w, double *f, double *z, Py_ssize_t *v)
{
    Py_ssize_t k = -1;
    for (Py_ssize_t q = 0; q < n; ++q)
        f[q] = d[q * stride];
    for (Py_ssize_t q = 0; q < n; ++q) {
        if (isinf(f[q]))
            continue;
        double s = 0.0;
        while (k >= 0) {
            const Py_ssize_t p = v[k];
            s = ((f[q] + w * (double)(q * q)) - (f[p] + w * (double)(p * p))) / (2.0 * w * (double)(q - p));
            if (s <= z[k])
                --k;
            else
                break;
        }
        ++k;
        v[k] = q;
        z[k] = k == 0 ? -INFINITY : s;
        z[k + 1] = INFINITY;
    }
    if (k < 0)
        return; /* no finite value on this line: it stays infinite */
    Py_ssize_t j = 0;
    for (Py_ssize_t i = 0; i < n; ++i) {
        while (z[j + 1] < (double)i)
            ++j;
        const double delta = (double)(i - v[j]);
        d[i * stride] = w * delta * delta + f[v[j]];
    }
}

static PyObject *context_values(PyObject *self, PyObject *args)
{
    Py_buffer labels_b, image_b;
    Py_ssize_t Z, Y, X, C, object, z0, y0, x0, z1, y1, x1, pz, py, px, reach;
    if (!PyArg_ParseTuple(args, "y*y*nnnnnnnnnnnnnnn", &labels_b, &image_b, &Z, &Y, &X, &C, &object, &z0, &y0, &x0,
                          &z1, &y1, &x1, &pz, &py, &px, &reach))
        return NULL;
    PyObject *result = NULL;
    double *d = NULL, *scratch = NULL, *values = NULL;
    Py_ssize_t *v = NULL;
    if (Z < 1 || Y < 1 || X < 1 || C < 1 || z0 < 0 || y0 < 0 || x0 < 0 || z1 > Z || y1 > Y || x1 > X || z0 >= z1 ||
        y0 >= y1 || x0 >= x1 || pz < 1 || py < 1 || px < 1 || reach < 1 ||
        labels_b.len < Z * Y * X * (Py_ssize_t)sizeof(int64_t) || image_b.len < Z * Y * X * C * (Py_ssize_t)sizeof(float)) {
        PyErr_SetString(PyExc_ValueError, "context_values: bad shape, box, pitch or buffer");
        goto done;
    }
    {
        const int64_t *labels = (const int64_t *)labels_b.buf;
        const float *image = (const float *)image_b.buf;
        const Py_ssize_t nz = z1 - z0, ny = y1 - y0, nx = x1 - x0, n = nz * ny * nx;
        const Py_ssize_t longest = nz > ny ? (nz > nx ? nz : nx) : (ny > nx ? ny : nx);
        const double limit = (double)reach * (double)reach;
        d = (double *)malloc(sizeof(double) * (size_t)n);
        scratch = (double *)malloc(sizeof(double) * (size_t)(2 * longest + 1));
        v = (Py_ssize_t *)malloc(sizeof(Py_ssize_t) * (size_t)longest);
        if (!d || !scratch || !v) {
            PyErr_NoMemory();
            goto done;
        }
        Py_ssize_t count = 0;
        int failed = 0;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t z = 0; z < nz; ++z)
            for (Py_ssize_t y = 0; y < ny; ++y) {
                const int64_t *row = labels + ((z + z0) * Y + (y + y0)) * X + x0;
                double *out = d + (z * ny + y) * nx;
                for (Py_ssize_t x = 0; x < nx; ++x)
                    out[x] = row[x] == object ? 0.0 : INFINITY;
            }
        double *f = scratch, *zz = scratch + longest;
        if ((double)(px * px) < limit)
            for (Py_ssize_t line = 0; line < nz * ny; ++line)
                envelope_pass(d + line * nx, nx, 1, (double)(px * px), f, zz, v);
        if ((double)(py * py) < limit && ny > 1)
            for (Py_ssize_t z = 0; z < nz; ++z)
                for (Py_ssize_t x = 0; x < nx; ++x)
                    envelope_pass(d + z * ny * nx + x, ny, nx, (double)(py * py), f, zz, v);
        if ((double)(pz * pz) < limit && nz > 1)
            for (Py_ssize_t yx = 0; yx < ny * nx; ++yx)
                envelope_pass(d + yx, nz, ny * nx, (double)(pz * pz), f, zz, v);
        for (Py_ssize_t z = 0; z < nz; ++z)
            for (Py_ssize_t y = 0; y < ny; ++y) {
                const int64_t *row = labels + ((z + z0) * Y + (y + y0)) * X + x0;
                const double *dist = d + (z * ny + y) * nx;
                for (Py_ssize_t x = 0; x < nx; ++x)
                    count += dist[x] < limit && row[x] != object;
            }
        values = (double *)malloc(sizeof(double) * (size_t)(count > 0 ? count * C : 1));
        if (!values)
            failed = 1;
        else {
            Py_ssize_t at = 0;
            for (Py_ssize_t z = 0; z < nz; ++z)
                for (Py_ssize_t y = 0; y < ny; ++y) {
                    const Py_ssize_t base = ((z + z0) * Y + (y + y0)) * X + x0;
                    const double *dist = d + (z * ny + y) * nx;
                    for (Py_ssize_t x = 0; x < nx; ++x)
                        if (dist[x] < limit && labels[base + x] != object)
                            for (Py_ssize_t c = 0; c < C; ++c)
                                values[at++] = (double)image[(base + x) * C + c];
                }
        }
        Py_END_ALLOW_THREADS
        if (failed) {
            PyErr_NoMemory();
            goto done;
        }
        result = PyBytes_FromStringAndSize((const char *)values, (Py_ssize_t)sizeof(double) * count * C);
    }
done:
    free(d);
    free(scratch);
    free(v);
    free(values);
    PyBuffer_Release(&labels_b);
    PyBuffer_Release(&image_b);
    return result;
}

static PyMethodDef methods[] = {
    {"context_values", context_values, METH_VARARGS,
     "context_values(labels, image, Z, Y, X, C, object, z0, y0, x0, z1, y1, x1, pitch_z, pitch_y, pitch_x, reach) "
     "-> bytes\n\n"
     "float64 intensities (x fastest, C per pixel) of the pixels of box [z0:z1, y0:y1, x0:x1] of the C-contiguous "
     "int64 labels (Z, Y, X) closer than reach to label `object` (distance with the given pitch), the object "
     "excluded; image is the C-contiguous float32 (Z, Y, X, C)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cneighbourhood", "Object neighbourhoods", -1, methods};

PyMODINIT_FUNC PyInit__cneighbourhood(void) { return PyModule_Create(&module); }
