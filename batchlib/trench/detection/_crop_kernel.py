"""The bilinear sampling of :class:`~batchlib.trench.detection.crop.CropSampler`, compiled.

One pass over the samples of all boxes, with scipy's arithmetic for order 1
(``NI_GeometricTransform``: weights ``1 - (x - floor(x))``, then the sum over
the four neighbours in C order, in double) so that the result is bit for bit
what ``scipy.ndimage.map_coordinates`` gives. The sample positions are not
stored: each is the broadcast sum :func:`~batchlib.trench.detection.crop.crop_coordinates`
makes, ``(row term + column term) + offset``, taken here in the same order.

Single-threaded on purpose: a parallel (``prange``) kernel may not be entered
from two threads at once under numba's default threading layer, and the
executors already spread units over the cores.
"""
from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True, nogil=True)
def bilinear_boxes(src, ay, by, ky, ax, bx, kx, out, edge):
    """Sample ``src`` (H, W) at ``py = (ay[n, i] + by[n, j]) + ky``, ``px = (ax[n, i] + bx[n, j]) + kx``.

    Writes ``out[n, i, j]`` (float32) for every sample whose four neighbours lie
    inside the frame; the flat indices of the others (at the frame's edge) go to
    ``edge``, whose used length is returned.
    """
    height, width = src.shape
    n_box, h = ay.shape
    w = by.shape[1]
    n_edge = 0
    for n in range(n_box):
        for i in range(h):
            ry, rx = ay[n, i], ax[n, i]
            for j in range(w):
                yy = (ry + by[n, j]) + ky
                xx = (rx + bx[n, j]) + kx
                y0 = np.floor(yy)
                x0 = np.floor(xx)
                if not (y0 >= 0 and y0 < height - 1 and x0 >= 0 and x0 < width - 1):
                    edge[n_edge] = (n * h + i) * w + j
                    n_edge += 1
                    continue
                wy0 = 1.0 - (yy - y0)
                wx0 = 1.0 - (xx - x0)
                wy1 = 1.0 - wy0
                wx1 = 1.0 - wx0
                r, c = int(y0), int(x0)
                t = np.float64(np.float32(src[r, c])) * wy0 * wx0
                t += np.float64(np.float32(src[r, c + 1])) * wy0 * wx1
                t += np.float64(np.float32(src[r + 1, c])) * wy1 * wx0
                t += np.float64(np.float32(src[r + 1, c + 1])) * wy1 * wx1
                out[n, i, j] = np.float32(t)
    return n_edge
