// Device side of test-turbo-cuda's check that the conversion-free SAS and int-to-float forms
// (cuda_common.cuh, used by the Hopper prefill kernel) give the same bits as their plain twins.
#include "cuda_common.cuh"
#include "cuda_sas_twins.h"
#include "tandem/turbo_attention.h"

#include <vector>

namespace {

__global__ void sas_twins_kernel(const float* y, int n, float y_max, int degree, __half c1, __half c2, __half c3,
                                 float* plain, float* fast) {
    const int i = 2 * (blockIdx.x * blockDim.x + threadIdx.x);
    if (i + 1 >= n) return;
    plain[i] = tandem::sas_exp2(-y[i], -y_max, degree, c1, c2, c3);
    plain[i + 1] = tandem::sas_exp2(-y[i + 1], -y_max, degree, c1, c2, c3);
    const float2 f = tandem::sas_exp2_pair_neg(y[i], y[i + 1], y_max, degree, __half2(c1, c1), __half2(c2, c2),
                                               __half2(c3, c3));
    fast[i] = f.x, fast[i + 1] = f.y;
}

__global__ void int_twins_kernel(const int* x, int n, float* plain, float* fast) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    plain[i] = (float)x[i];
    fast[i] = tandem::int_plus_bias(x[i]) - tandem::kIntBias;
}

template <class T>
T* to_device(const std::vector<T>& v) {
    T* d = nullptr;
    TANDEM_CHECK_CUDA(cudaMalloc(&d, v.size() * sizeof(T)));
    TANDEM_CHECK_CUDA(cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}

// Two device result arrays of n floats, copied back and freed with the input.
struct Results {
    float *plain = nullptr, *fast = nullptr;
    explicit Results(int n) {
        TANDEM_CHECK_CUDA(cudaMalloc(&plain, n * 4));
        TANDEM_CHECK_CUDA(cudaMalloc(&fast, n * 4));
    }
    void fetch(int n, void* input, std::vector<float>& p, std::vector<float>& f) {
        TANDEM_CHECK_CUDA(cudaGetLastError());
        p.resize(n);
        f.resize(n);
        TANDEM_CHECK_CUDA(cudaMemcpy(p.data(), plain, n * 4, cudaMemcpyDeviceToHost));
        TANDEM_CHECK_CUDA(cudaMemcpy(f.data(), fast, n * 4, cudaMemcpyDeviceToHost));
        for (void* ptr : {input, (void*)plain, (void*)fast}) TANDEM_CHECK_CUDA(cudaFree(ptr));
    }
};

}  // namespace

void sas_twins_cuda(const std::vector<float>& y, int degree, float threshold, std::vector<float>& plain,
                    std::vector<float>& fast) {
    const int n = (int)y.size();
    float* dy = to_device(y);
    Results r(n);
    float c[4];
    tandem::turbo_sas_coeffs(degree, c);
    sas_twins_kernel<<<(n / 2 + 255) / 256, 256>>>(dy, n, -threshold, degree, __float2half_rn(c[1]),
                                                    __float2half_rn(c[2]), __float2half_rn(c[3]), r.plain, r.fast);
    r.fetch(n, dy, plain, fast);
}

void int_twins_cuda(const std::vector<int>& x, std::vector<float>& plain, std::vector<float>& fast) {
    const int n = (int)x.size();
    int* dx = to_device(x);
    Results r(n);
    int_twins_kernel<<<(n + 255) / 256, 256>>>(dx, n, r.plain, r.fast);
    r.fetch(n, dx, plain, fast);
}
