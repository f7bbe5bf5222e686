// Line plots as self-contained SVG (hand-written; no plotting dependency): the quality-vs-
// cloud-share curves of `tandem router eval` (curve_svg, router_eval.h) and of the routing
// evaluation (bench/hybrid_eval). Series share their x values, which span [0, 1]; the y range
// is the data's, padded by 5%. A 5 x 5 grid with tick labels, the legend right of the plot:
// one line a series, then the notes.
#pragma once
#include <string>
#include <vector>

namespace tandem {

struct PlotSeries {
    std::string name;       // legend text
    std::string color;      // "#1f5fbf"
    std::string dash;       // stroke-dasharray; "" is a solid line
    std::vector<double> y;  // (x.size())
};

struct CurvePlot {
    std::string title, x_label, y_label;  // plain text (escaped here)
    std::vector<double> x;                // in [0, 1]
    std::vector<PlotSeries> series;
    std::vector<std::string> notes;       // legend lines under the series (plain text)
    // An optional dot at (marker_x, marker_y), e.g. the router's operating point.
    bool marker = false;
    double marker_x = 0, marker_y = 0;
    std::string marker_color = "#1f5fbf";
    // Canvas and margins (px); `right` holds the legend.
    double width = 720, height = 460, left = 70, right = 190, top = 40, bottom = 55;
};

// The plot as an SVG document. y values outside the data range cannot occur (the range is the
// data's); x outside [0, 1] is drawn outside the frame.
std::string svg_curve_plot(const CurvePlot& plot);

}  // namespace tandem
