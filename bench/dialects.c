/* dialects.c — micro-benchmark of the library dialects: ms per call of the reference kernel,
 * the blas and the dnnl implementation on the shapes that matter (LeNet-5, a ResNet 3x3 conv,
 * MLP, GPT and attention matmuls), forward and backward; GFLOP/s for matmuls. `make
 * bench-dialects`; an optional argument keeps only the cases whose name contains it.
 *
 * Measured (best ms per call; OpenBLAS 0.3.21, oneDNN 2.6.3 on plain NCHW; 16-core AVX-512 host,
 * and the same pinned to 2 cores with 2 threads):
 *                              16 cores                     2 cores
 *                          ref      blas     dnnl       ref      blas     dnnl
 *   lenet conv1 fwd       4.748    0.778    0.125     4.262    1.025    0.513
 *   lenet conv1 dgrad     4.976    1.453    0.166     3.436    1.197    0.737
 *   lenet conv1 wgrad     4.597    1.928    0.132     4.587    1.511    1.126
 *   lenet pool1 max fwd   1.607      -      0.027     1.605      -      0.097
 *   lenet pool1 max bwd   0.412      -      0.171     0.410      -      0.811
 *   lenet pool1 avg fwd   0.222      -      0.028     0.222      -      0.098
 *   lenet pool1 avg bwd   0.354      -      0.052     0.354      -      0.176
 *   lenet conv2 fwd       3.383    1.600    0.119     3.372    1.598    0.480
 *   lenet conv2 dgrad     4.314    1.580    0.151     4.202    1.512    0.563
 *   lenet conv2 wgrad    10.182    1.442    0.133     9.374    1.715    0.556
 *   lenet pool2 max fwd   0.535      -      0.011     0.535      -      0.024
 *   lenet pool2 max bwd   0.155      -      0.045     0.156      -      0.170
 *   resnet conv3x3 fwd  240.962   15.360    2.340   190.542   34.830    9.828
 *   resnet conv3x3 dgrad 211.539  20.872    3.638   197.353   41.488   13.623
 *   resnet conv3x3 wgrad 648.460  17.045   10.989   608.016   36.379   13.294
 *
 * Matmuls (f32; best ms per call and GFLOP/s of 9 runs, 2-core host shared with other jobs
 * (load average ~6: runs were bimodal, 1 or 2 cores free, each figure varied up to 2-4x between
 * runs); 2 threads, OMP_WAIT_POLICY=passive; OpenBLAS 0.3.21 sgemm vs oneDNN's matmul primitive):
 *                              ms: ref    blas    dnnl     GFLOP/s: ref blas dnnl   picks
 *   mm 128x784x512           8.917   0.617   0.811      12   166   126   dnnl
 *   mm 128x784x512 dx        7.874   0.621   0.566      13   166   182   dnnl
 *   mm 128x784x512 dw        9.614   0.633   0.599      11   162   171   blas
 *   mm 128x512x512           5.830   0.401   0.535      12   167   125   dnnl
 *   mm 128x512x512 dx        4.995   0.407   0.373      13   165   179   dnnl
 *   mm 128x512x512 dw        6.614   0.421   0.550      10   159   121   blas
 *   mm 128x512x10            0.194   0.032   0.021       7    41    62   dnnl
 *   mm 128x512x10 dx         0.103   0.028   0.017      13    47    78   dnnl
 *   mm 128x512x10 dw         0.273   0.033   0.022       5    40    60   dnnl
 *   mm gpt 256->768         35.740   2.334   2.188      11   172   184   dnnl
 *   mm gpt 256->768 dx      30.394   2.317   2.295      13   173   175   dnnl
 *   mm gpt 256->768 dw      39.805   2.188   2.728      10   184   147   blas
 *   mm gpt 256->1024        56.094   3.023   2.871      10   178   188   dnnl
 *   mm gpt 256->1024 dx     47.282   2.975   4.058      11   181   133   dnnl
 *   mm gpt 256->1024 dw     56.121   5.874  12.479      10    92    43   blas
 *   mm gpt 1024->256        42.596   5.831   3.132      13    92   171   dnnl
 *   mm gpt 1024->256 dx     39.940   5.954   2.877      13    90   187   dnnl
 *   mm gpt 1024->256 dw     59.824   6.005  14.772       9    89    36   blas
 *   mm vocab                79.912  10.112  11.675      13   106    92   dnnl
 *   mm vocab dx             86.295  13.718  12.493      12    78    86   dnnl
 *   mm vocab dw            143.961  12.865  25.203       7    84    43   blas
 *   mm vocab dw batched    151.255  21.992  32.497       7    49    33   blas
 *   mm att q@k^T             4.818   0.652   0.389      14   103   172   dnnl
 *   mm att q@kt              5.011   0.797   0.423      13    84   159   dnnl
 *   mm att p@v               4.988   0.666   0.382      13   101   176   dnnl
 *   mm att dp=do@v^T         4.764   0.632   0.752      14   106    89   dnnl
 *   mm att dv=p^T@do         5.427   0.658   0.774      12   102    87   dnnl
 *   mm att dk=ds^T@q         5.398   0.627   0.401      12   107   168   dnnl
 * A standalone run of the same GEMMs (cblas_sgemm, dnnl_sgemm, the matmul primitive) gave the
 * primitive 0.39 ms / 170-180 GFLOP/s on 128x512x512 and 128x784x512 and 0.42-0.46 ms on the
 * attention gradients in its 2-core runs; dnnl_sgemm matched the primitive on 2-D GEMMs and
 * lost 1.4x on batched ones (a parallel region per matrix), so the dialect uses the primitive.
 * Hence dnnl (priority 20) over blas for matmul except a transposed a on large matrices (the
 * weight gradients), where oneDNN's jit GEMM runs at 36-43 GFLOP/s (dnnl.c, DN_MM_TA_LIMIT).
 * And dnnl (priority 20) over blas (10) for convolutions and pools, and dnnl's
 * max_pool2d_backward only with at least 4 CPUs (dnnl.c). */
#include "dialects/dialect.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct bench_case {
    const char *name, *params, *call;
} bench_case;

static const bench_case cases[] = {
    /* LeNet-5 on 28x28, batch 64 */
    {"lenet conv1 fwd", "%x: f32[64, 1, 28, 28], %w: f32[6, 1, 5, 5]", "conv2d(%x, %w, padding=[2, 2])"},
    {"lenet conv1 dgrad", "%x: f32[64, 6, 28, 28], %w: f32[6, 1, 5, 5]", "conv2d_transpose(%x, %w, padding=[2, 2])"},
    {"lenet conv1 wgrad", "%x: f32[64, 1, 28, 28], %dy: f32[64, 6, 28, 28]", "conv2d_backward_weight(%x, %dy, kernel=[5, 5], padding=[2, 2])"},
    {"lenet pool1 max fwd", "%x: f32[64, 6, 28, 28]", "max_pool2d(%x, kernel=[2, 2])"},
    {"lenet pool1 max bwd", "%x: f32[64, 6, 28, 28], %dy: f32[64, 6, 14, 14]", "max_pool2d_backward(%x, %dy, kernel=[2, 2])"},
    {"lenet pool1 avg fwd", "%x: f32[64, 6, 28, 28]", "avg_pool2d(%x, kernel=[2, 2])"},
    {"lenet pool1 avg bwd", "%dy: f32[64, 6, 14, 14]", "avg_pool2d_backward(%dy, kernel=[2, 2], input_size=[28, 28])"},
    {"lenet conv2 fwd", "%x: f32[64, 6, 14, 14], %w: f32[16, 6, 5, 5]", "conv2d(%x, %w)"},
    {"lenet conv2 dgrad", "%x: f32[64, 16, 10, 10], %w: f32[16, 6, 5, 5]", "conv2d_transpose(%x, %w)"},
    {"lenet conv2 wgrad", "%x: f32[64, 6, 14, 14], %dy: f32[64, 16, 10, 10]", "conv2d_backward_weight(%x, %dy, kernel=[5, 5])"},
    {"lenet pool2 max fwd", "%x: f32[64, 16, 10, 10]", "max_pool2d(%x, kernel=[2, 2])"},
    {"lenet pool2 max bwd", "%x: f32[64, 16, 10, 10], %dy: f32[64, 16, 5, 5]", "max_pool2d_backward(%x, %dy, kernel=[2, 2])"},
    /* ResNet basic block conv: 3x3, 64 -> 64, 56x56, batch 8 */
    {"resnet conv3x3 fwd", "%x: f32[8, 64, 56, 56], %w: f32[64, 64, 3, 3]", "conv2d(%x, %w, padding=[1, 1])"},
    {"resnet conv3x3 dgrad", "%x: f32[8, 64, 56, 56], %w: f32[64, 64, 3, 3]", "conv2d_transpose(%x, %w, padding=[1, 1])"},
    {"resnet conv3x3 wgrad", "%x: f32[8, 64, 56, 56], %dy: f32[8, 64, 56, 56]", "conv2d_backward_weight(%x, %dy, kernel=[3, 3], padding=[1, 1])"},
    /* matmuls: y = x @ w, then the backward's transposed forms dx = dy @ w^T, dw = x^T @ dy (the
     * batch of a linear layer on [8, 128, features] folds into rows, as autodiff does for dw) */
    {"mm 128x784x512", "%a: f32[128, 784], %b: f32[784, 512]", "matmul(%a, %b)"},
    {"mm 128x784x512 dx", "%a: f32[128, 512], %b: f32[784, 512]", "matmul(%a, %b, transpose_b=true)"},
    {"mm 128x784x512 dw", "%a: f32[128, 784], %b: f32[128, 512]", "matmul(%a, %b, transpose_a=true)"},
    {"mm 128x512x512", "%a: f32[128, 512], %b: f32[512, 512]", "matmul(%a, %b)"},
    {"mm 128x512x512 dx", "%a: f32[128, 512], %b: f32[512, 512]", "matmul(%a, %b, transpose_b=true)"},
    {"mm 128x512x512 dw", "%a: f32[128, 512], %b: f32[128, 512]", "matmul(%a, %b, transpose_a=true)"},
    {"mm 128x512x10", "%a: f32[128, 512], %b: f32[512, 10]", "matmul(%a, %b)"},
    {"mm 128x512x10 dx", "%a: f32[128, 10], %b: f32[512, 10]", "matmul(%a, %b, transpose_b=true)"},
    {"mm 128x512x10 dw", "%a: f32[128, 512], %b: f32[128, 10]", "matmul(%a, %b, transpose_a=true)"},
    {"mm gpt 256->768", "%a: f32[8, 128, 256], %b: f32[256, 768]", "matmul(%a, %b)"},
    {"mm gpt 256->768 dx", "%a: f32[8, 128, 768], %b: f32[256, 768]", "matmul(%a, %b, transpose_b=true)"},
    {"mm gpt 256->768 dw", "%a: f32[1024, 256], %b: f32[1024, 768]", "matmul(%a, %b, transpose_a=true)"},
    {"mm gpt 256->1024", "%a: f32[8, 128, 256], %b: f32[256, 1024]", "matmul(%a, %b)"},
    {"mm gpt 256->1024 dx", "%a: f32[8, 128, 1024], %b: f32[256, 1024]", "matmul(%a, %b, transpose_b=true)"},
    {"mm gpt 256->1024 dw", "%a: f32[1024, 256], %b: f32[1024, 1024]", "matmul(%a, %b, transpose_a=true)"},
    {"mm gpt 1024->256", "%a: f32[8, 128, 1024], %b: f32[1024, 256]", "matmul(%a, %b)"},
    {"mm gpt 1024->256 dx", "%a: f32[8, 128, 256], %b: f32[1024, 256]", "matmul(%a, %b, transpose_b=true)"},
    {"mm gpt 1024->256 dw", "%a: f32[1024, 1024], %b: f32[1024, 256]", "matmul(%a, %b, transpose_a=true)"},
    /* the vocabulary projection x @ E^T (E [2048, 256]): dx = dy @ E, dE = dy^T @ x, folded or
     * per sequence */
    {"mm vocab", "%a: f32[8, 128, 256], %b: f32[2048, 256]", "matmul(%a, %b, transpose_b=true)"},
    {"mm vocab dx", "%a: f32[8, 128, 2048], %b: f32[2048, 256]", "matmul(%a, %b)"},
    {"mm vocab dw", "%a: f32[1024, 2048], %b: f32[1024, 256]", "matmul(%a, %b, transpose_a=true)"},
    {"mm vocab dw batched", "%a: f32[8, 128, 2048], %b: f32[8, 128, 256]", "matmul(%a, %b, transpose_a=true)"},
    /* attention, 8 sequences x 4 heads: s = q @ k^T, o = p @ v and their gradients */
    {"mm att q@k^T", "%a: f32[8, 4, 128, 64], %b: f32[8, 4, 128, 64]", "matmul(%a, %b, transpose_b=true)"},
    {"mm att q@kt", "%a: f32[8, 4, 128, 64], %b: f32[8, 4, 64, 128]", "matmul(%a, %b)"},
    {"mm att p@v", "%a: f32[8, 4, 128, 128], %b: f32[8, 4, 128, 64]", "matmul(%a, %b)"},
    {"mm att dp=do@v^T", "%a: f32[8, 4, 128, 64], %b: f32[8, 4, 128, 64]", "matmul(%a, %b, transpose_b=true)"},
    {"mm att dv=p^T@do", "%a: f32[8, 4, 128, 128], %b: f32[8, 4, 128, 64]", "matmul(%a, %b, transpose_a=true)"},
    {"mm att dk=ds^T@q", "%a: f32[8, 4, 128, 128], %b: f32[8, 4, 128, 64]", "matmul(%a, %b, transpose_a=true)"},
};

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

/* Best ms per call of kernel k over runs filling about 0.3 s (at least 3, after one warm-up);
 * negative if the kernel fails. */
static double time_kernel(kiln_kernel_fn k, kiln_kernel_args *a) {
    if (k(a) != KILN_OK) return -1;
    double best = 1e300, start = now_ms();
    for (int r = 0; r < 3 || (now_ms() - start < 300 && r < 1000); r++) {
        double t0 = now_ms();
        if (k(a) != KILN_OK) return -1;
        double t = now_ms() - t0;
        if (t < best) best = t;
    }
    return best;
}

/* Floating-point operations of a matmul node (2 per multiply-add); 0 for other ops. */
static double matmul_flops(const kiln_node *n) {
    if (n->op != KILN_OP_MATMUL) return 0;
    const kiln_type *a = n->in[0]->type, *o = n->out->type;
    bool ta = a->ndim > 1 && kiln_attr_bool(n->op, n->attrs, "transpose_a");
    int64_t k = a->shape[a->ndim - (ta ? 2 : 1)];
    return 2.0 * (double)kiln_shape_numel(o->ndim, o->shape) * (double)k;
}

static void bench(kiln_context *ctx, const bench_case *c) {
    char text[1024];
    snprintf(text, sizeof text, "def @f(%s) {\n let %%y = %s\n return %%y\n}\n", c->params, c->call);
    kiln_module *m = kiln_module_parse(ctx, text, "bench.kir");
    if (!m) {
        printf("%-26s parse error: %s\n", c->name, kiln_error_message(ctx));
        return;
    }
    kiln_node *n = kiln_module_function(m, "f")->body->first;
    kiln_tensor *in[2] = {NULL, NULL}, *out = kiln_tensor_new(ctx, KILN_F32, n->out->type->ndim, n->out->type->shape);
    for (int i = 0; i < n->n_in; i++) {
        const kiln_type *t = n->in[i]->type;
        in[i] = kiln_tensor_new(ctx, t->dtype, t->ndim, t->shape);
        float *d = in[i] ? in[i]->data : NULL;
        for (int64_t e = 0; d && e < in[i]->numel; e++) d[e] = (float)((e * 7919) % 1000) / 500.0f - 1.0f;
    }
    kiln_kernel_args a = {ctx, n->op, n->attrs, n->n_in, in, 1, &out, "bench"};
    double ms[3] = {-1, -1, -1};
    if (out && in[0] && (n->n_in < 2 || in[1])) {
        ms[0] = time_kernel(kiln_op_info_get(n->op)->kernel, &a);
        /* each dialect's kernel, also where its supports() declines for speed ("-": it fails);
         * dnnl first: OpenBLAS's threads spin for a while after each call and would steal cores
         * from the OpenMP threads that follow (with OMP_WAIT_POLICY=passive those sleep) */
        for (int d = KILN_DIALECT_DNNL; d >= KILN_DIALECT_BLAS; d--) {
            const kiln_dialect_impl *const *list = d == KILN_DIALECT_BLAS ? kiln_blas_impls : kiln_dnnl_impls;
            for (int i = 0; kiln_dialect_available((kiln_dialect_id)d, NULL, 0) && list[i]; i++)
                if (list[i]->op == n->op) ms[d] = time_kernel(list[i]->kernel, &a);
        }
    }
    printf("%-26s", c->name);
    for (int i = 0; i < 3; i++) ms[i] < 0 ? printf(" %9s", "-") : printf(" %9.3f", ms[i]);
    kiln_dialect_id all[] = {KILN_DIALECT_BLAS, KILN_DIALECT_DNNL};
    const kiln_dialect_impl *pick = kiln_dialect_pick(n, 2, all);
    printf("   %-4s", pick ? kiln_dialect_name(pick->dialect) : "c");
    double flops = matmul_flops(n);
    for (int i = 0; flops > 0 && i < 3; i++) ms[i] < 0 ? printf(" %7s", "-") : printf(" %7.1f", flops / ms[i] * 1e-6);
    printf("\n");
    for (int i = 0; i < 2; i++) kiln_tensor_release(in[i]);
    kiln_tensor_release(out);
    kiln_module_free(m);
}

int main(int argc, char **argv) {
    kiln_context *ctx = kiln_context_new();
    for (int d = KILN_DIALECT_BLAS; d <= KILN_DIALECT_DNNL; d++) {
        char why[256];
        if (!kiln_dialect_available((kiln_dialect_id)d, why, sizeof why))
            printf("dialect %s unavailable: %s\n", kiln_dialect_name((kiln_dialect_id)d), why);
    }
    printf("%-26s %9s %9s %9s   %-4s  %s\n", "ms per call", "ref", "blas", "dnnl", "pick", "GFLOP/s ref blas dnnl");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (argc < 2 || strstr(cases[i].name, argv[1])) bench(ctx, &cases[i]);
    kiln_context_free(ctx);
    return 0;
}
