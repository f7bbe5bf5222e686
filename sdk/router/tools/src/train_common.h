// The part of training shared by the router kinds: features of every row, standardised dense
// features and labels. Internal.
#pragma once
#include <vector>

#include "tandem/router_train.h"

namespace tandem::detail {

struct PreparedData {
    FeatureConfig cfg;                           // with dense_mean / dense_std filled
    std::vector<std::vector<uint32_t>> buckets;  // (N) active buckets per row
    std::vector<double> z;                       // (N, n_dense) standardised dense features
    std::vector<double> y;                       // (N) labels
    double t = 0;                                // trans relaxation (0 otherwise)
};

// Throws RouterError on an empty dataset, bad options, or a row lacking a signal.
PreparedData prepare_training(const Dataset& data, const TrainOptions& opt);

}  // namespace tandem::detail
