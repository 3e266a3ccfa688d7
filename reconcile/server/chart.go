package server

import (
	"html/template"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/reconcile"
)

// The chart of one analysis metric: a viewBox of chartW × chartH user
// units with the plot inside it, the value labels left of the plot and
// the time labels under it.
const (
	chartW, chartH = 300, 84
	plotL, plotR   = 40, 296 // x of the plot's left and right edges
	plotT, plotB   = 6, 70   // y of its top and bottom edges
	chartWindow    = time.Hour
	// chartPoints is the most points a polyline gets: an hour at the
	// monitor's default interval of a minute is 60; a finer series is
	// averaged down, so a chart stays a few kilobytes.
	chartPoints = 128
)

// A bound of an analysis metric, as MetricAnalysis.Bound words it:
// "<= 0.01", ">= 0.95", "<= 1.2 × stable", or several of them.
type chartBound struct {
	Op    string // "<=" or ">="
	Value float64
	// Ratio: the bound is Value times the stable version's value at the
	// same time (max_ratio_to_stable).
	Ratio bool
}

var boundRE = regexp.MustCompile(`(<=|>=|≤|≥|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(\s*(?:×|x|\*)\s*stable)?`)

// parseBounds reads the bounds out of a MetricAnalysis.Bound; words it
// does not know give none (the chart then has no bound line, and the
// caption still says the bound as written).
func parseBounds(s string) []chartBound {
	var out []chartBound
	for _, m := range boundRE.FindAllStringSubmatch(s, -1) {
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		op := "<="
		if m[1] == ">=" || m[1] == "≥" || m[1] == ">" {
			op = ">="
		}
		out = append(out, chartBound{Op: op, Value: v, Ratio: m[3] != ""})
	}
	return out
}

// chartSVG draws a metric's last hour up to end (the analysis's time) as
// an inline SVG: the stable and the canary series as two polylines, each
// bound dashed, the lowest and highest value at the left and "-1h" and
// "now" under the plot. Points outside the hour, NaN and ±Inf are
// skipped; with no point left it says "no data". A flat series gets a
// range around its value, so nothing divides by zero.
//
// An absolute bound (min, max) is a dashed horizontal line. A ratio
// bound (max_ratio_to_stable, "<= 1.2 × stable") is drawn against the
// two series rather than as a chart of canary/stable: the dashed line is
// the bound itself, 1.2 × the stable series at each of its points, so
// the canary fails where its line rises above the dashed one. That keeps
// both versions' real values on every chart (the operator reads the
// latency, not a ratio) and needs no pairing of canary and stable
// samples by time; the caption says what the dashed line is.
//
// It is pure: the same metric and end give the same bytes. The only text
// it writes besides numbers is the metric's name and bound, escaped.
func chartSVG(m reconcile.MetricAnalysis, end time.Time) template.HTML {
	if end.IsZero() {
		end = lastTime(m.CanarySeries, m.StableSeries)
	}
	start := end.Add(-chartWindow)
	canary := chartClean(m.CanarySeries, start, end)
	stable := chartClean(m.StableSeries, start, end)

	// The bound lines: a horizontal one per absolute bound, a series
	// per ratio bound.
	var levels []float64
	var ratios [][]reconcile.Point
	for _, b := range parseBounds(m.Bound) {
		if !b.Ratio {
			levels = append(levels, b.Value)
			continue
		}
		var r []reconcile.Point
		for _, p := range stable {
			if v := p.V * b.Value; !math.IsInf(v, 0) {
				r = append(r, reconcile.Point{T: p.T, V: v})
			}
		}
		if len(r) > 0 {
			ratios = append(ratios, r)
		}
	}

	var b strings.Builder
	b.WriteString(`<svg class="chart" viewBox="0 0 ` + itoa(chartW) + ` ` + itoa(chartH) + `" width="` + itoa(chartW) +
		`" height="` + itoa(chartH) + `" role="img" aria-label="`)
	b.WriteString(template.HTMLEscapeString(m.Name + ": canary and stable, the last hour"))
	b.WriteString(`"><title>`)
	b.WriteString(template.HTMLEscapeString(strings.TrimSpace(m.Name + " " + m.Bound)))
	b.WriteString(`</title><rect class="plot" x="` + itoa(plotL) + `" y="` + itoa(plotT) + `" width="` + itoa(plotR-plotL) +
		`" height="` + itoa(plotB-plotT) + `"/>`)
	tx := itoa(plotB + 12)
	b.WriteString(`<text x="` + itoa(plotL) + `" y="` + tx + `">-1h</text><text x="` + itoa(plotR) + `" y="` + tx + `" text-anchor="end">now</text>`)

	if len(canary) == 0 && len(stable) == 0 {
		b.WriteString(`<text class="nodata" x="` + itoa((plotL+plotR)/2) + `" y="` + itoa((plotT+plotB)/2+4) + `" text-anchor="middle">no data</text></svg>`)
		return template.HTML(b.String())
	}

	lo, hi := math.Inf(1), math.Inf(-1)
	see := func(v float64) { lo, hi = min(lo, v), max(hi, v) }
	for _, s := range append([][]reconcile.Point{canary, stable}, ratios...) {
		for _, p := range s {
			see(p.V)
		}
	}
	for _, v := range levels {
		see(v)
	}
	// Halves, so that hi-lo cannot overflow to +Inf at the ends of the
	// float range. A flat chart (one value) has no range: its line is
	// level in the middle, labelled with the value.
	span := hi/2 - lo/2
	x := func(t time.Time) string {
		f := float64(t.Sub(start)) / float64(chartWindow)
		return fmtCoord(plotL + f*(plotR-plotL))
	}
	y := func(v float64) string {
		f := 0.5
		if span > 0 {
			f = (v/2 - lo/2) / span
		}
		return fmtCoord(plotB - f*(plotB-plotT))
	}
	line := func(class, extra string, s []reconcile.Point) {
		b.WriteString(`<polyline class="` + class + `"` + extra + ` points="`)
		for i, p := range s {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(x(p.T) + "," + y(p.V))
		}
		b.WriteString(`"/>`)
	}

	if span > 0 {
		b.WriteString(`<text x="` + itoa(plotL-3) + `" y="` + itoa(plotT+8) + `" text-anchor="end">` + fmtValue(hi) + `</text>`)
		b.WriteString(`<text x="` + itoa(plotL-3) + `" y="` + itoa(plotB) + `" text-anchor="end">` + fmtValue(lo) + `</text>`)
	} else {
		b.WriteString(`<text x="` + itoa(plotL-3) + `" y="` + itoa((plotT+plotB)/2+3) + `" text-anchor="end">` + fmtValue(lo) + `</text>`)
	}
	for _, v := range levels {
		b.WriteString(`<line class="bound" stroke-dasharray="4 3" x1="` + itoa(plotL) + `" x2="` + itoa(plotR) + `" y1="` + y(v) + `" y2="` + y(v) + `"/>`)
	}
	for _, r := range ratios {
		line("bound", ` stroke-dasharray="4 3"`, r)
	}
	if len(stable) > 0 {
		line("stable", "", stable)
	}
	if len(canary) > 0 {
		line("canary", "", canary)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// chartClean is the finite points of s within [start, end], in time
// order, averaged down to at most chartPoints.
func chartClean(s []reconcile.Point, start, end time.Time) []reconcile.Point {
	var out []reconcile.Point
	for _, p := range s {
		if math.IsNaN(p.V) || math.IsInf(p.V, 0) || p.T.Before(start) || p.T.After(end) {
			continue
		}
		out = append(out, p)
	}
	slices.SortStableFunc(out, func(a, b reconcile.Point) int { return a.T.Compare(b.T) })
	if len(out) <= chartPoints {
		return out
	}
	// Equal slices of the hour, each its points' mean (halves again:
	// a sum of large values could overflow).
	bucket := chartWindow / chartPoints
	var down []reconcile.Point
	for i := 0; i < len(out); {
		k := min(int(out[i].T.Sub(start)/bucket), chartPoints-1)
		j, sum, t0 := i, 0.0, out[i].T
		var dt time.Duration
		for ; j < len(out) && min(int(out[j].T.Sub(start)/bucket), chartPoints-1) == k; j++ {
			sum += out[j].V
			dt += out[j].T.Sub(t0)
		}
		n := j - i
		mean := sum / float64(n)
		if math.IsInf(mean, 0) {
			mean = 0
			for _, p := range out[i:j] {
				mean += p.V / float64(n)
			}
		}
		down = append(down, reconcile.Point{T: t0.Add(dt / time.Duration(n)), V: mean})
		i = j
	}
	return down
}

func lastTime(series ...[]reconcile.Point) time.Time {
	var t time.Time
	for _, s := range series {
		for _, p := range s {
			if p.T.After(t) {
				t = p.T
			}
		}
	}
	return t
}

func itoa(n int) string { return strconv.Itoa(n) }

// fmtCoord writes a coordinate rounded to a whole unit: the chart is
// drawn at one unit a pixel, and integers keep a polyline of an hour
// near half a kilobyte.
func fmtCoord(v float64) string { return strconv.Itoa(int(math.Round(v))) }

// fmtValue writes a value to three significant digits.
func fmtValue(v float64) string { return strconv.FormatFloat(v, 'g', 3, 64) }
