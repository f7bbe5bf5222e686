// Line plots as SVG (see tandem/svg_plot.h).
#include "tandem/svg_plot.h"

#include <algorithm>
#include <cstdio>

namespace tandem {

static std::string xml_escape(const std::string& s) {
    std::string o;
    for (char c : s) {
        if (c == '<') o += "&lt;";
        else if (c == '>') o += "&gt;";
        else if (c == '&') o += "&amp;";
        else if (c == '"') o += "&quot;";
        else o += c;
    }
    return o;
}

std::string svg_curve_plot(const CurvePlot& p) {
    const double W = p.width, H = p.height, L = p.left, R = p.right, T = p.top, B = p.bottom;
    double lo = 0, hi = 0;
    bool first = true;
    for (const PlotSeries& se : p.series)
        for (double v : se.y) {
            lo = first ? v : std::min(lo, v);
            hi = first ? v : std::max(hi, v);
            first = false;
        }
    const double pad = (hi - lo) * 0.05 + 1e-9;
    lo -= pad, hi += pad;
    auto X = [&](double x) { return L + x * (W - L - R); };
    auto Y = [&](double y) { return T + (hi - y) / (hi - lo) * (H - T - B); };
    char buf[512];
    std::string s;
    std::snprintf(buf, sizeof buf,
                  "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" font-family=\"sans-serif\" "
                  "font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
                  "<text x=\"%.0f\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">",
                  W, H, (L + W - R) / 2);
    s += buf + xml_escape(p.title) + "</text>\n";
    for (int i = 0; i <= 5; i++) {  // grid and tick labels
        const double x = i / 5.0, y = lo + (hi - lo) * i / 5.0;
        std::snprintf(buf, sizeof buf,
                      "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                      "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.1f</text>\n"
                      "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                      "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.3f</text>\n",
                      X(x), T, X(x), H - B, X(x), H - B + 18, x, L, Y(y), W - R, Y(y), L - 6, Y(y) + 4, y);
        s += buf;
    }
    std::snprintf(buf, sizeof buf,
                  "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"black\"/>\n"
                  "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">",
                  L, T, W - L - R, H - T - B, (L + W - R) / 2, H - 12);
    s += buf + xml_escape(p.x_label) + "</text>\n";
    std::snprintf(buf, sizeof buf, "<text x=\"18\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 18 %.1f)\">",
                  (T + H - B) / 2, (T + H - B) / 2);
    s += buf + xml_escape(p.y_label) + "</text>\n";
    int row = 0;
    for (const PlotSeries& se : p.series) {
        std::string pts;
        for (size_t i = 0; i < p.x.size() && i < se.y.size(); i++) {
            std::snprintf(buf, sizeof buf, "%.1f,%.1f ", X(p.x[i]), Y(se.y[i]));
            pts += buf;
        }
        s += "<polyline fill=\"none\" stroke=\"" + se.color + "\" stroke-width=\"2\" stroke-dasharray=\"" + se.dash +
             "\" points=\"" + pts + "\"/>\n";
        const double ly = T + 10 + 20 * row++;
        std::snprintf(buf, sizeof buf, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke-width=\"2\" ", W - R + 12, ly,
                      W - R + 40, ly);
        s += buf + std::string("stroke=\"") + se.color + "\" stroke-dasharray=\"" + se.dash + "\"/>";
        std::snprintf(buf, sizeof buf, "<text x=\"%.1f\" y=\"%.1f\">", W - R + 46, ly + 4);
        s += buf + xml_escape(se.name) + "</text>\n";
    }
    if (p.marker) {
        std::snprintf(buf, sizeof buf, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"", X(p.marker_x), Y(p.marker_y));
        s += buf + p.marker_color + "\"/>\n";
    }
    for (const std::string& note : p.notes) {
        std::snprintf(buf, sizeof buf, "<text x=\"%.1f\" y=\"%.1f\">", W - R + 12, T + 10 + 20 * row++ + 4);
        s += buf + xml_escape(note) + "</text>\n";
    }
    return s + "</svg>\n";
}

}  // namespace tandem
