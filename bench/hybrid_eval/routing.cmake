# The routing half of issue 8 (Hybrid LLM with the demo model pair), included from
# CMakeLists.txt here. tandem_hybrid_routing: sentence cutting, scoring, the router's JSONL,
# sampling with one shared prefill, the report (tests/test-hybrid-routing.cpp tests it).
# hybrid-routing: the program bench/hybrid_eval/routing.sh runs (data, then report).
add_library(tandem_hybrid_routing STATIC
  routing_data.cpp
  routing_sample.cpp
  routing_collect.cpp
  routing_report.cpp
)
target_include_directories(tandem_hybrid_routing PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(tandem_hybrid_routing PUBLIC tandem_hybrid_eval tandem_router_tools tandem_client_engine
  nlohmann_json::nlohmann_json Threads::Threads PRIVATE tandem_warnings)
get_filename_component(TANDEM_ROUTING_SHARED_DIR "${PROJECT_SOURCE_DIR}/../shared" ABSOLUTE)
add_executable(hybrid-routing routing_main.cpp)
target_link_libraries(hybrid-routing PRIVATE tandem_hybrid_routing tandem_warnings)
target_compile_definitions(hybrid-routing PRIVATE TANDEM_SHARED_DIR="${TANDEM_ROUTING_SHARED_DIR}"
  TANDEM_DEMO_CLIENT="${PROJECT_SOURCE_DIR}/bench/demo_pair/tandem-demo-client-2005-q8_0.gguf")
