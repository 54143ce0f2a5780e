/* backend.c — the CUDA backend's vtable and the one symbol libkiln_cuda.so exports. */
#include "cuda/cuda_internal.h"

static const kiln_backend backend = {
    .abi = KILN_BACKEND_ABI,
    .name = "cuda",
    .last_error = kiln_cu_last_error,
    .init = kiln_cu_init,
    .device_count = kiln_cu_device_count,
    .device_describe = kiln_cu_device_describe,
    .device_arch = kiln_cu_device_arch,
    .alloc = kiln_cu_alloc,
    .free = kiln_cu_free,
    .set_pool = kiln_cu_set_pool,
    .get_stats = kiln_cu_get_stats,
    .reset_peak = kiln_cu_reset_peak,
    .trim = kiln_cu_trim,
    .copy_h2d = kiln_cu_copy_h2d,
    .copy_d2h = kiln_cu_copy_d2h,
    .copy_d2d = kiln_cu_copy_d2d,
    .memset_d = kiln_cu_memset,
    .synchronize = kiln_cu_synchronize,
    .nvrtc_compile = kiln_cu_nvrtc_compile,
    .free_image = kiln_cu_free_image,
    .nvrtc_version = kiln_cu_nvrtc_version,
    .module_load = kiln_cu_module_load,
    .module_get = kiln_cu_module_get,
    .module_free = kiln_cu_module_free,
    .launch = kiln_cu_launch,
    .gemm = kiln_cu_gemm,
    .graph_begin = kiln_cu_graph_begin,
    .graph_end = kiln_cu_graph_end,
    .graph_launch = kiln_cu_graph_launch,
    .graph_free = kiln_cu_graph_free,
};

__attribute__((visibility("default"))) const kiln_backend *kiln_cuda_backend_entry(void);
const kiln_backend *kiln_cuda_backend_entry(void) { return &backend; }
