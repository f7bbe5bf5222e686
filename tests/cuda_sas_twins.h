// test-turbo-cuda's launchers for the twin checks of cuda_sas_twins.cu.
#pragma once
#include <vector>

// plain[i] = sas_exp2(-y[i]), fast[i] = sas_exp2_pair_neg on pairs of y (y.size() even).
void sas_twins_cuda(const std::vector<float>& y, int degree, float threshold, std::vector<float>& plain,
                    std::vector<float>& fast);
// plain[i] = (float)x[i], fast[i] = int_plus_bias(x[i]) - kIntBias.
void int_twins_cuda(const std::vector<int>& x, std::vector<float>& plain, std::vector<float>& fast);
