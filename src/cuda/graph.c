/* graph.c — CUDA graphs: capture the device's stream between graph_begin and graph_end
 * (relaxed mode, so allocations and other calls made meanwhile stay legal), instantiate, replay.
 * Page-pool blocks used by a graph must stay allocated while it may run; blocks of the none pool
 * allocated during capture become the graph's own allocation nodes and must be freed within it. */
#include "cuda/cuda_internal.h"
#include <stdlib.h>

struct kiln_backend_graph {
    int dev;
    CUgraphExec exec;
};

int kiln_cu_graph_begin(int dev) {
    kiln_cu_device *d = kiln_cu_enter(dev);
    if (!d) return -1;
    return kiln_cu_check(kiln_cu_drv.cuStreamBeginCapture(d->stream, CU_STREAM_CAPTURE_MODE_RELAXED),
                         "cuStreamBeginCapture(device %d)", dev);
}

int kiln_cu_graph_end(int dev, kiln_backend_graph **out) {
    *out = NULL;
    kiln_cu_device *d = kiln_cu_enter(dev);
    if (!d) return -1;
    CUgraph graph = NULL;
    if (kiln_cu_check(kiln_cu_drv.cuStreamEndCapture(d->stream, &graph), "cuStreamEndCapture(device %d): the capture "
                      "failed (an operation in it was not capturable, or it was invalidated)", dev))
        return -1;
    kiln_backend_graph *g = calloc(1, sizeof *g);
    int rc = g ? 0 : kiln_cu_fail("CUDA: out of host memory for a graph");
    if (!rc)
        rc = kiln_cu_check(kiln_cu_drv.cuGraphInstantiateWithFlags(&g->exec, graph, 0),
                           "cuGraphInstantiateWithFlags(device %d)", dev);
    /* the executable graph is independent of the captured one */
    if (kiln_cu_check(kiln_cu_drv.cuGraphDestroy(graph), "cuGraphDestroy(device %d)", dev) && !rc) {
        kiln_cu_drv.cuGraphExecDestroy(g->exec);
        rc = -1;
    }
    if (rc) {
        free(g);
        return -1;
    }
    g->dev = dev;
    *out = g;
    return 0;
}

int kiln_cu_graph_launch(int dev, kiln_backend_graph *g) {
    kiln_cu_device *d = kiln_cu_enter(dev);
    if (!d) return -1;
    if (g->dev != dev) return kiln_cu_fail("CUDA: graph captured on device %d launched on device %d", g->dev, dev);
    return kiln_cu_check(kiln_cu_drv.cuGraphLaunch(g->exec, d->stream), "cuGraphLaunch(device %d)", dev);
}

void kiln_cu_graph_free(kiln_backend_graph *g) {
    if (!g) return;
    if (kiln_cu_enter(g->dev)) kiln_cu_check(kiln_cu_drv.cuGraphExecDestroy(g->exec), "cuGraphExecDestroy(device %d)", g->dev);
    free(g);
}
