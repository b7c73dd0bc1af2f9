package grafana

import (
	"context"
	"fmt"
	"html"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/chromedp/chromedp"
)

// TimeAxis is the instants a picture's points are at: N of them, Step
// apart from Start.
type TimeAxis struct {
	Start time.Time
	Step  time.Duration
	N     int
}

// At is the i-th instant of the axis.
func (a TimeAxis) At(i int) time.Time { return a.Start.Add(time.Duration(i) * a.Step) }

// Series is one line of a panel: its legend and a value per instant of
// the axis, NaN where the query had none.
type Series struct {
	Legend string
	Values []float64
}

// Grafana's grid and dark theme, roughly.
const (
	pageWidth   = 1600
	pagePad     = 16
	headerH     = 56
	cellH       = 30 // a grid row
	cellMargin  = 8
	panelTitleH = 30
	legendLineH = 17
	axisLeftW   = 64
	axisBottomH = 20
)

var palette = []string{
	"#73BF69", "#F2CC0C", "#8AB8FF", "#FF780A", "#F2495C", "#5794F2", "#B877D9", "#705DA0",
	"#37872D", "#FADE2A", "#447EBC", "#C15C17", "#DE314D", "#0A50A1", "#A352CC", "#584477",
	"#B7DBAB", "#F4D598", "#70DBED", "#F9BA8F", "#F29191", "#82B5D8", "#E5A8E2", "#AEA2E0",
}

// Page is an HTML page and its size in CSS pixels.
type Page struct {
	HTML          string
	Width, Height int
}

// Render lays the dashboard's panels out by their gridPos, as Grafana
// does on a wide screen, each drawn from its history: the series of its
// targets, by panel id, at the instants of axis.
func Render(d *Dashboard, history map[int][]Series, axis TimeAxis) Page {
	colW := float64(pageWidth-2*pagePad+cellMargin) / 24
	bottom := 0
	var body strings.Builder
	var draw func(ps []Panel)
	draw = func(ps []Panel) {
		for _, p := range ps {
			g := p.GridPos
			left := pagePad + int(float64(g.X)*colW)
			top := pagePad + headerH + g.Y*(cellH+cellMargin)
			w := int(float64(g.W)*colW) - cellMargin
			h := g.H*cellH + (g.H-1)*cellMargin
			bottom = max(bottom, top+h)
			style := fmt.Sprintf("left:%dpx;top:%dpx;width:%dpx;height:%dpx", left, top, w, h)
			switch p.Type {
			case "row": // a collapsed row shows only its title, as in Grafana
				arrow := "&#9662;"
				if p.Collapsed {
					arrow = "&#9656;"
				} else {
					draw(p.Panels)
				}
				fmt.Fprintf(&body, `<div class="row" style="%s">%s %s</div>`, style, arrow, html.EscapeString(p.Title))
				continue
			case "stat":
				fmt.Fprintf(&body, `<div class="panel" style="%s">%s%s</div>`, style, panelTitle(p), statSVG(p, history[p.ID], w, h-panelTitleH))
			default:
				fmt.Fprintf(&body, `<div class="panel" style="%s">%s%s</div>`, style, panelTitle(p), timeseriesSVG(p, history[p.ID], axis, w, h-panelTitleH))
			}
		}
	}
	draw(d.Panels)
	height := bottom + pagePad

	var page strings.Builder
	fmt.Fprintf(&page, `<!doctype html><html><head><meta charset="utf-8"><title>%s</title><style>
body{margin:0;background:#111217;color:#ccccdc;font:12px/1.3 Inter,"Helvetica Neue",Arial,sans-serif;width:%dpx;height:%dpx;position:relative;overflow:hidden}
.header{position:absolute;left:%dpx;top:%dpx;right:%dpx;height:%dpx;display:flex;align-items:center;gap:10px}
.header h1{font-size:18px;font-weight:500;margin:0 18px 0 0;color:#d8d9da}
.var{display:flex;border:1px solid #2c3235;border-radius:2px;overflow:hidden}
.var span{padding:5px 9px}.var span:first-child{background:#22252b;color:#6e9fff}
.range{margin-left:auto}
.row{position:absolute;font-size:15px;font-weight:500;color:#d8d9da;display:flex;align-items:center}
.panel{position:absolute;background:#181b1f;border:1px solid #24292e;border-radius:2px;box-sizing:border-box;overflow:hidden}
.title{height:%dpx;line-height:%dpx;padding:0 8px;font-size:13px;font-weight:500;color:#ccccdc;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
svg text{fill:#8e8e8e;font:11px Inter,"Helvetica Neue",Arial,sans-serif}
svg .legend{fill:#ccccdc}
svg .value{font-weight:500}
</style></head><body>`, html.EscapeString(d.Title), pageWidth, height, pagePad, pagePad, pagePad, headerH-8, panelTitleH, panelTitleH)
	fmt.Fprintf(&page, `<div class="header"><h1>%s</h1>`, html.EscapeString(d.Title))
	for _, v := range d.Templating.List {
		value := "All"
		if v.Type == "datasource" {
			value = "Prometheus"
		}
		fmt.Fprintf(&page, `<div class="var"><span>%s</span><span>%s</span></div>`, html.EscapeString(v.Name), value)
	}
	fmt.Fprintf(&page, `<div class="var range"><span>&#9719;</span><span>%s to %s</span></div></div>`,
		axis.Start.Format("2006-01-02 15:04:05"), axis.At(axis.N-1).Format("15:04:05"))
	page.WriteString(body.String())
	page.WriteString("</body></html>\n")
	return Page{HTML: page.String(), Width: pageWidth, Height: height}
}

func panelTitle(p Panel) string {
	return `<div class="title">` + html.EscapeString(p.Title) + `</div>`
}

// timeseriesSVG draws a panel's lines, filled as the panel says, a
// y axis in the panel's unit, times below, and a list legend under it
// (as many lines of it as fit a third of the panel).
func timeseriesSVG(p Panel, series []Series, axis TimeAxis, w, h int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg width="%d" height="%d" xmlns="http://www.w3.org/2000/svg">`, w, h)
	if len(series) == 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">No data</text></svg>`, w/2, h/2)
		return b.String()
	}

	// The legend: entries laid out in lines, as wide as their text.
	type entry struct {
		x, line int
		s       Series
		color   string
	}
	var entries []entry
	x, line := 8, 0
	for i, s := range series {
		width := 22 + int(6.2*float64(len([]rune(s.Legend))))
		if x+width > w-8 && x > 8 {
			x, line = 8, line+1
		}
		entries = append(entries, entry{x, line, s, palette[i%len(palette)]})
		x += width + 10
	}
	maxLines := max(1, (h/3)/legendLineH)
	lines := min(line+1, maxLines)
	legendH := lines*legendLineH + 4
	plotX, plotY := axisLeftW, 6
	plotW, plotH := w-axisLeftW-10, h-legendH-axisBottomH-plotY

	lo, hi := 0.0, math.Inf(-1)
	for _, s := range series {
		for _, v := range s.Values {
			if !math.IsNaN(v) && !math.IsInf(v, 0) {
				lo, hi = min(lo, v), max(hi, v)
			}
		}
	}
	if math.IsInf(hi, -1) || hi <= lo {
		hi = lo + 1
	}
	ticks := niceTicks(lo, hi, max(2, plotH/40))
	lo, hi = ticks[0], ticks[len(ticks)-1]
	py := func(v float64) float64 { return float64(plotY) + float64(plotH)*(hi-v)/(hi-lo) }
	px := func(i int) float64 { return float64(plotX) + float64(plotW)*float64(i)/float64(max(1, axis.N-1)) }

	for _, v := range ticks {
		y := py(v)
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#2c3235" stroke-width="1"/>`, plotX, plotX+plotW, y, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`, plotX-6, y, html.EscapeString(formatValue(v, p.FieldConfig.Defaults.Unit)))
	}
	every := timeTickEvery(axis, plotW)
	for i := range axis.N {
		at := axis.At(i)
		if at.Truncate(every) != at {
			continue
		}
		x := px(i)
		if x > float64(plotX+plotW)-28 { // its label would leave the panel
			continue
		}
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#2c3235" stroke-width="1"/>`, x, x, plotY, plotY+plotH)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`, x, plotY+plotH+14, at.Format("15:04:05"))
	}

	for _, e := range entries {
		for _, seg := range segments(e.s.Values) {
			var pts strings.Builder
			for i := seg[0]; i < seg[1]; i++ {
				fmt.Fprintf(&pts, "%.1f,%.1f ", px(i), py(clamp(e.s.Values[i], lo, hi)))
			}
			if opacity := p.FieldConfig.Defaults.Custom.FillOpacity / 100; opacity > 0 {
				area := fmt.Sprintf("%.1f,%.1f %s%.1f,%.1f", px(seg[0]), py(max(lo, 0)), pts.String(), px(seg[1]-1), py(max(lo, 0)))
				fmt.Fprintf(&b, `<polygon points="%s" fill="%s" fill-opacity="%.2f" stroke="none"/>`, area, e.color, opacity)
			}
			fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="1.4" stroke-linejoin="round"/>`, pts.String(), e.color)
		}
	}

	legendTop := h - legendH + 2
	shown := 0
	for _, e := range entries {
		if e.line >= lines {
			continue
		}
		shown++
		y := legendTop + e.line*legendLineH
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="14" height="4" rx="1" fill="%s"/>`, e.x, y+6, e.color)
		fmt.Fprintf(&b, `<text class="legend" x="%d" y="%d" dominant-baseline="middle">%s</text>`, e.x+18, y+8, html.EscapeString(e.s.Legend))
	}
	if hidden := len(entries) - shown; hidden > 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end" dominant-baseline="middle">+%d more</text>`, w-8, legendTop+(lines-1)*legendLineH+8, hidden)
	}
	b.WriteString("</svg>")
	return b.String()
}

// statSVG draws a stat panel: the last value of its first series, big, in
// Grafana's green, over a sparkline of its history.
func statSVG(p Panel, series []Series, w, h int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg width="%d" height="%d" xmlns="http://www.w3.org/2000/svg">`, w, h)
	last := math.NaN()
	if len(series) > 0 {
		vs := series[0].Values
		for i := len(vs) - 1; i >= 0; i-- {
			if !math.IsNaN(vs[i]) {
				last = vs[i]
				break
			}
		}
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, v := range vs {
			if !math.IsNaN(v) {
				lo, hi = min(lo, v), max(hi, v)
			}
		}
		if hi <= lo {
			lo, hi = lo-1, hi+1
		}
		top := float64(h) * 0.45
		py := func(v float64) float64 { return top + (float64(h)-top)*(hi-v)/(hi-lo) }
		pxs := func(i int) float64 { return float64(w) * float64(i) / float64(max(1, len(vs)-1)) }
		for _, seg := range segments(vs) {
			var pts strings.Builder
			for i := seg[0]; i < seg[1]; i++ {
				fmt.Fprintf(&pts, "%.1f,%.1f ", pxs(i), py(vs[i]))
			}
			fmt.Fprintf(&b, `<polygon points="%.1f,%d %s%.1f,%d" fill="#73BF69" fill-opacity="0.18" stroke="none"/>`, pxs(seg[0]), h, pts.String(), pxs(seg[1]-1), h)
			fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="#73BF69" stroke-width="1.4"/>`, pts.String())
		}
	}
	text := "No data"
	if !math.IsNaN(last) {
		text = formatValue(last, p.FieldConfig.Defaults.Unit)
	}
	size := min(h/2, 2*w/max(1, len(text))*2/3)
	fmt.Fprintf(&b, `<text class="value" x="%d" y="%d" text-anchor="middle" dominant-baseline="middle" style="fill:#73BF69;font-size:%dpx">%s</text>`, w/2, h*2/5, size, html.EscapeString(text))
	b.WriteString("</svg>")
	return b.String()
}

// segments are the runs of values that are numbers, as [start, end).
func segments(vs []float64) [][2]int {
	var out [][2]int
	start := -1
	for i, v := range vs {
		ok := !math.IsNaN(v) && !math.IsInf(v, 0)
		switch {
		case ok && start < 0:
			start = i
		case !ok && start >= 0:
			out = append(out, [2]int{start, i})
			start = -1
		}
	}
	if start >= 0 {
		out = append(out, [2]int{start, len(vs)})
	}
	return out
}

func clamp(v, lo, hi float64) float64 { return max(lo, min(hi, v)) }

// niceTicks returns about n+1 round values from at most lo to at least hi.
func niceTicks(lo, hi float64, n int) []float64 {
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if step = m * mag; step >= raw {
			break
		}
	}
	var ticks []float64
	for v := math.Floor(lo/step) * step; ; v += step {
		ticks = append(ticks, v)
		if v >= hi-step*1e-9 {
			return ticks
		}
	}
}

// timeTickEvery is the round interval between time labels that leaves
// about 90 pixels for each.
func timeTickEvery(axis TimeAxis, plotW int) time.Duration {
	span := axis.Step * time.Duration(max(1, axis.N-1))
	for _, d := range []time.Duration{10 * time.Second, 15 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute} {
		if float64(plotW)*float64(d)/float64(span) >= 90 {
			return d
		}
	}
	return 10 * time.Minute
}

// formatValue writes v in a Grafana unit, the few the dashboard uses.
func formatValue(v float64, unit string) string {
	switch unit {
	case "s":
		switch a := math.Abs(v); {
		case a == 0:
			return "0 s"
		case a < 1e-3:
			return decimal(v*1e6) + " µs"
		case a < 1:
			return decimal(v*1e3) + " ms"
		default:
			return decimal(v) + " s"
		}
	case "percentunit":
		return decimal(v*100) + "%"
	case "reqps":
		return si(v, "req/s")
	case "ops":
		return si(v, "ops/s")
	case "Bps":
		return si(v, "B/s")
	default:
		return strings.TrimSpace(si(v, ""))
	}
}

// si writes v with a k, M or G prefix to unit.
func si(v float64, unit string) string {
	for _, p := range []struct {
		f      float64
		prefix string
	}{{1e9, "G"}, {1e6, "M"}, {1e3, "k"}} {
		if math.Abs(v) >= p.f {
			return decimal(v/p.f) + " " + p.prefix + unit
		}
	}
	return decimal(v) + " " + unit
}

func decimal(v float64) string {
	digits := 2
	switch a := math.Abs(v); {
	case a >= 100:
		digits = 0
	case a >= 10:
		digits = 1
	}
	s := strconv.FormatFloat(v, 'f', digits, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// WriteScreenshot photographs page with the headless Chromium at browser
// (its executable), at the page's own size, and writes the PNG to path.
func WriteScreenshot(browser string, page Page, path string) error {
	dir, err := os.MkdirTemp("", "grafana-page-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "dashboard.html")
	if err := os.WriteFile(file, []byte(page.HTML), 0o600); err != nil {
		return err
	}
	alloc, stopAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU,
		chromedp.WindowSize(page.Width, page.Height))...)
	defer stopAlloc()
	browserCtx, stopBrowser := chromedp.NewContext(alloc)
	defer stopBrowser()
	// The first run starts the browser, whose life is its context's.
	if err := chromedp.Do(browserCtx, chromedp.EmulateViewport(int64(page.Width), int64(page.Height))); err != nil {
		return fmt.Errorf("start %s: %w", browser, err)
	}
	ctx, cancel := context.WithTimeout(browserCtx, 60*time.Second)
	defer cancel()
	// A static page: once loaded (Navigate waits for that), it is drawn.
	if err := chromedp.Do(ctx, chromedp.Navigate("file://"+file)); err != nil {
		return fmt.Errorf("load the page: %w", err)
	}
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		return fmt.Errorf("screenshot: %w", err)
	}
	return os.WriteFile(path, png, 0o644)
}
