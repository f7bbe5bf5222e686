// Sampling: each step checked on logits whose outcome is known.
#include <cmath>
#include <map>
#include <stdexcept>

#include <doctest/doctest.h>

#include "tandem/sampler.h"

using namespace tandem;

static std::vector<float> logits_of(std::vector<float> v) { return v; }

TEST_CASE("greedy picks the argmax after bias and penalties") {
    SamplerParams p;
    p.temperature = 0;
    Sampler s(p, 4);
    auto l = logits_of({1, 3, 2, 0});
    CHECK(s.sample(l.data(), {}) == 1);
    p.logit_bias = {{1, -INFINITY}};
    Sampler banned(p, 4);
    CHECK(banned.sample(l.data(), {}) == 2);
    p.logit_bias = {};
    p.repeat_penalty = 2.0f;  // 3 -> 1.5 < 2
    Sampler rep(p, 4);
    CHECK(rep.sample(l.data(), {1}) == 2);
    p.repeat_penalty = 1.0f;
    p.presence_penalty = 0.6f;
    p.frequency_penalty = 0.3f;  // 3 - 0.6 - 2*0.3 = 1.8 < 2
    Sampler fp(p, 4);
    CHECK(fp.sample(l.data(), {1, 1}) == 2);
    CHECK(fp.sample(l.data(), {1}) == 1);  // 3 - 0.9 = 2.1 > 2
}

TEST_CASE("same seed, same tokens; different seeds differ") {
    std::vector<float> l(50);
    for (int i = 0; i < 50; i++) l[i] = std::sin(i * 0.7f);
    SamplerParams p;
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0;
    auto draw = [&](uint64_t seed) {
        p.seed = seed;
        Sampler s(p, 50);
        std::vector<int32_t> out;
        for (int i = 0; i < 40; i++) out.push_back(s.sample(l.data(), {}));
        return out;
    };
    CHECK(draw(1) == draw(1));
    CHECK(draw(1) != draw(2));
}

TEST_CASE("top-k, top-p and min-p keep exactly the expected candidates") {
    // probabilities proportional to 8, 4, 2, 1, 1 (sum 16)
    std::vector<float> l = {std::log(8.f), std::log(4.f), std::log(2.f), 0, 0};
    auto support = [&](SamplerParams p) {
        p.temperature = 1.0f;
        std::map<int32_t, int> seen;
        for (uint64_t seed = 0; seed < 400; seed++) {
            p.seed = seed;
            Sampler s(p, 5);
            seen[s.sample(l.data(), {})]++;
        }
        std::vector<int32_t> ids;
        for (auto& [id, n] : seen) ids.push_back(id);
        return ids;
    };
    SamplerParams p;
    p.top_k = 2; p.top_p = 1; p.min_p = 0;
    CHECK(support(p) == std::vector<int32_t>{0, 1});
    p.top_k = 0; p.top_p = 0.7f;  // 0.5 then 0.75 >= 0.7: two tokens
    CHECK(support(p) == std::vector<int32_t>{0, 1});
    p.top_p = 1; p.min_p = 0.2f;  // keeps p >= 0.2 * 0.5: 0.5, 0.25, 0.125
    CHECK(support(p) == std::vector<int32_t>{0, 1, 2});
}

TEST_CASE("temperature sharpens: low temperature picks the top token almost always") {
    std::vector<float> l = {1.0f, 0.9f, 0.8f};
    SamplerParams p;
    p.top_k = 0; p.top_p = 1; p.min_p = 0;
    p.temperature = 0.01f;
    int top = 0;
    for (uint64_t seed = 0; seed < 200; seed++) {
        p.seed = seed;
        Sampler s(p, 3);
        top += s.sample(l.data(), {}) == 0;
    }
    CHECK(top == 200);
}

TEST_CASE("bad parameters are rejected with a reason") {
    SamplerParams p;
    p.logit_bias = {{9, 1.0f}};
    CHECK_THROWS_WITH_AS(Sampler(p, 4), doctest::Contains("outside the vocabulary"), std::invalid_argument);
    p.logit_bias = {};
    p.top_p = 0;
    CHECK_THROWS_AS(Sampler(p, 4), std::invalid_argument);
    SamplerParams q;
    q.logit_bias = {{0, -INFINITY}, {1, -INFINITY}};
    Sampler s(q, 2);
    std::vector<float> l = {0, 0};
    CHECK_THROWS_WITH(s.sample(l.data(), {}), doctest::Contains("banned"));
}
