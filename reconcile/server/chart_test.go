package server

import (
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/reconcile"
)

var chartEnd = time.Date(2026, 12, 2, 15, 0, 0, 0, time.UTC)

func pts(start time.Time, step time.Duration, vs ...float64) []reconcile.Point {
	out := make([]reconcile.Point, len(vs))
	for i, v := range vs {
		out[i] = reconcile.Point{T: start.Add(time.Duration(i) * step), V: v}
	}
	return out
}

var pointsRE = regexp.MustCompile(`<polyline class="([a-z]+)"[^>]* points="([^"]*)"`)

// polylines are the chart's polylines by class (the bound's last), as
// coordinates.
func polylines(t *testing.T, svg string) map[string][][2]float64 {
	t.Helper()
	out := map[string][][2]float64{}
	for _, m := range pointsRE.FindAllStringSubmatch(svg, -1) {
		var line [][2]float64
		for xy := range strings.FieldsSeq(m[2]) {
			xs, ys, ok := strings.Cut(xy, ",")
			x, err1 := strconv.ParseFloat(xs, 64)
			y, err2 := strconv.ParseFloat(ys, 64)
			if !ok || err1 != nil || err2 != nil {
				t.Fatalf("bad point %q in %s", xy, svg)
			}
			line = append(line, [2]float64{x, y})
		}
		out[m[1]] = line
	}
	return out
}

// inPlot fails unless every point is a finite point of the plot area.
func inPlot(t *testing.T, name string, line [][2]float64) {
	t.Helper()
	for _, p := range line {
		if !(p[0] >= plotL && p[0] <= plotR && p[1] >= plotT && p[1] <= plotB) {
			t.Errorf("%s: point %v outside the plot [%d,%d]×[%d,%d]", name, p, plotL, plotR, plotT, plotB)
		}
	}
}

func TestChartSVGScalesIntoTheViewBox(t *testing.T) {
	start := chartEnd.Add(-time.Hour)
	// Stable from 1 to 3 over the hour, the canary 2 throughout; the
	// bound at 4 is the top of the range.
	m := reconcile.MetricAnalysis{Name: "latency_p99", Bound: "<= 4",
		StableSeries: pts(start, 30*time.Minute, 1, 2, 3),
		CanarySeries: pts(start, 30*time.Minute, 2, 2, 2)}
	svg := string(chartSVG(m, chartEnd))
	if !strings.HasPrefix(svg, `<svg class="chart" viewBox="0 0 300 84"`) || !strings.HasSuffix(svg, "</svg>") {
		t.Fatalf("not an svg: %s", svg)
	}
	lines := polylines(t, svg)
	// y: 1 is the bottom (70), 4 the top (6); x: start is 40, end 296.
	want := map[string][][2]float64{
		"stable": {{40, 70}, {168, 49}, {296, 27}},
		"canary": {{40, 49}, {168, 49}, {296, 49}},
	}
	for class, w := range want {
		got := lines[class]
		if len(got) != len(w) {
			t.Fatalf("%s: %v, want %v", class, got, w)
		}
		for i := range w {
			if math.Abs(got[i][0]-w[i][0]) > 0.05 || math.Abs(got[i][1]-w[i][1]) > 0.05 {
				t.Errorf("%s point %d = %v, want %v", class, i, got[i], w[i])
			}
		}
	}
	for _, s := range []string{
		`<line class="bound" stroke-dasharray="4 3" x1="40" x2="296" y1="6" y2="6"/>`,
		`text-anchor="end">4</text>`, `text-anchor="end">1</text>`, // max and min
		`>-1h</text>`, `>now</text>`, `<title>latency_p99 &lt;= 4</title>`,
	} {
		if !strings.Contains(svg, s) {
			t.Errorf("chart lacks %q:\n%s", s, svg)
		}
	}
	if strings.Contains(svg, "no data") {
		t.Error("a chart with data says no data")
	}
	// Pure: the same input, the same bytes.
	if again := string(chartSVG(m, chartEnd)); again != svg {
		t.Error("chartSVG is not deterministic")
	}
}

func TestChartSVGNoData(t *testing.T) {
	start := chartEnd.Add(-time.Hour)
	for name, m := range map[string]reconcile.MetricAnalysis{
		"empty":          {Name: "error_rate", Bound: "<= 0.01"},
		"all NaN or Inf": {Name: "error_rate", CanarySeries: pts(start, time.Minute, math.NaN(), math.Inf(1), math.Inf(-1))},
		"all too old":    {Name: "error_rate", StableSeries: pts(start.Add(-3*time.Hour), time.Minute, 1, 2)},
		"all too new":    {Name: "error_rate", StableSeries: pts(chartEnd.Add(time.Minute), time.Minute, 1, 2)},
	} {
		svg := string(chartSVG(m, chartEnd))
		if !strings.Contains(svg, `<text class="nodata"`) || !strings.Contains(svg, ">no data</text>") || strings.Contains(svg, "<polyline") {
			t.Errorf("%s: %s", name, svg)
		}
		if strings.Contains(svg, "NaN") || strings.Contains(svg, "Inf") {
			t.Errorf("%s: non-finite numbers in %s", name, svg)
		}
	}
	// No end and no points: still a chart that says so.
	if svg := string(chartSVG(reconcile.MetricAnalysis{}, time.Time{})); !strings.Contains(svg, "no data") {
		t.Errorf("zero metric: %s", svg)
	}
}

func TestChartSVGSkipsNonFinite(t *testing.T) {
	start := chartEnd.Add(-time.Hour)
	m := reconcile.MetricAnalysis{Name: "error_rate",
		CanarySeries: pts(start, 10*time.Minute, 0.1, math.NaN(), 0.2, math.Inf(1), 0.3, math.Inf(-1), 0.4),
		StableSeries: pts(start, 10*time.Minute, math.NaN(), 0.2)}
	svg := string(chartSVG(m, chartEnd))
	lines := polylines(t, svg)
	if len(lines["canary"]) != 4 || len(lines["stable"]) != 1 {
		t.Fatalf("canary %d points (want 4), stable %d (want 1): %s", len(lines["canary"]), len(lines["stable"]), svg)
	}
	inPlot(t, "canary", lines["canary"])
	inPlot(t, "stable", lines["stable"])
	if strings.Contains(svg, "NaN") || strings.Contains(svg, "Inf") {
		t.Errorf("non-finite numbers in %s", svg)
	}
	// Ranges are of the finite values: 0.1 to 0.4.
	if !strings.Contains(svg, `text-anchor="end">0.4</text>`) || !strings.Contains(svg, `text-anchor="end">0.1</text>`) {
		t.Errorf("labels: %s", svg)
	}
}

func TestChartSVGFlat(t *testing.T) {
	start := chartEnd.Add(-time.Hour)
	for _, v := range []float64{0, 5, -2, 1e-300, math.MaxFloat64} {
		m := reconcile.MetricAnalysis{Name: "flat", CanarySeries: pts(start, 15*time.Minute, v, v, v, v, v),
			StableSeries: pts(start, 15*time.Minute, v)}
		svg := string(chartSVG(m, chartEnd))
		if strings.Contains(svg, "NaN") || strings.Contains(svg, "Inf") {
			t.Fatalf("flat at %v: %s", v, svg)
		}
		lines := polylines(t, svg)
		inPlot(t, "flat canary", lines["canary"])
		// A flat line is drawn level, in the middle of its range.
		for _, p := range lines["canary"] {
			if p[1] != (plotT+plotB)/2 {
				t.Errorf("flat at %v: y %v, want the middle %v", v, p[1], (plotT+plotB)/2)
			}
		}
	}
	// The widest range there is does not overflow either.
	m := reconcile.MetricAnalysis{CanarySeries: pts(start, 30*time.Minute, -math.MaxFloat64, math.MaxFloat64)}
	lines := polylines(t, string(chartSVG(m, chartEnd)))
	inPlot(t, "extremes", lines["canary"])
	if len(lines["canary"]) != 2 || lines["canary"][0][1] != plotB || lines["canary"][1][1] != plotT {
		t.Errorf("extremes: %v", lines["canary"])
	}
}

func TestChartSVGRatioBound(t *testing.T) {
	start := chartEnd.Add(-time.Hour)
	m := reconcile.MetricAnalysis{Name: "latency_p99", Bound: ">= 0.5, <= 1.5 × stable",
		StableSeries: pts(start, 20*time.Minute, 1, 1, 2, 2),
		CanarySeries: pts(start, 20*time.Minute, 1, 2, 2, 3.5)}
	svg := string(chartSVG(m, chartEnd))
	lines := polylines(t, svg)
	// The ratio bound is a dashed polyline at 1.5 × stable, the
	// absolute one a dashed line; 0.5 is the bottom, 3.5 the top.
	bound := lines["bound"]
	if len(bound) != 4 || !strings.Contains(svg, `<polyline class="bound" stroke-dasharray="4 3"`) {
		t.Fatalf("ratio bound: %v in %s", bound, svg)
	}
	y := func(v float64) float64 { return plotB - (v-0.5)/3*(plotB-plotT) }
	for i, v := range []float64{1.5, 1.5, 3, 3} {
		if math.Abs(bound[i][1]-y(v)) > 0.5 {
			t.Errorf("bound point %d at y %v, want %v (%v)", i, bound[i][1], y(v), v)
		}
	}
	if !strings.Contains(svg, `<line class="bound" stroke-dasharray="4 3" x1="40" x2="296" y1="70" y2="70"/>`) {
		t.Errorf("the absolute bound >= 0.5 is not the bottom line: %s", svg)
	}
	for _, c := range []string{"canary", "stable"} {
		inPlot(t, c, lines[c])
	}
}

func TestChartSVGDownsamplesAndEscapes(t *testing.T) {
	start := chartEnd.Add(-time.Hour)
	vs := make([]float64, 3600) // a sample a second
	for i := range vs {
		vs[i] = float64(i % 7)
	}
	m := reconcile.MetricAnalysis{Name: `<script>alert("x")</script>`, Bound: `<= 1 & "more"`,
		CanarySeries: pts(start, time.Second, vs...)}
	svg := string(chartSVG(m, chartEnd))
	if n := len(polylines(t, svg)["canary"]); n == 0 || n > chartPoints {
		t.Errorf("%d points of 3600, want 1 to %d", n, chartPoints)
	}
	if len(svg) > 4<<10 {
		t.Errorf("chart of 3600 points is %d bytes", len(svg))
	}
	if strings.Contains(svg, "<script") || !strings.Contains(svg, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") || !strings.Contains(svg, "&amp; &#34;more&#34;") {
		t.Errorf("not escaped: %s", svg)
	}
	// Unsorted input is drawn in time order.
	m = reconcile.MetricAnalysis{CanarySeries: []reconcile.Point{{T: chartEnd, V: 2}, {T: start, V: 1}}}
	if l := polylines(t, string(chartSVG(m, chartEnd)))["canary"]; len(l) != 2 || l[0][0] != plotL || l[1][0] != plotR {
		t.Errorf("unsorted: %v", l)
	}
}

func TestParseBounds(t *testing.T) {
	for in, want := range map[string][]chartBound{
		"<= 0.01":                         {{"<=", 0.01, false}},
		">= 0.95":                         {{">=", 0.95, false}},
		"<= 1.2 × stable":                 {{"<=", 1.2, true}},
		">= 0.5, <= 2, <= 1e-05 × stable": {{">=", 0.5, false}, {"<=", 2, false}, {"<=", 1e-5, true}},
		"≤ 3 x stable":                    {{"<=", 3, true}},
		"":                                nil,
		"within reason":                   nil,
	} {
		got := parseBounds(in)
		if len(got) != len(want) {
			t.Errorf("%q: %v, want %v", in, got, want)
			continue
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("%q: %v, want %v", in, got, want)
			}
		}
	}
}
