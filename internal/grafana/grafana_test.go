package grafana

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testDashboard = `{
  "id": null, "uid": "wamp", "title": "WAMP <router>", "schemaVersion": 39,
  "templating": {"list": [
    {"name": "datasource", "type": "datasource", "query": "prometheus"},
    {"name": "procedure", "type": "query", "allValue": ".*", "includeAll": true, "multi": true},
    {"name": "realm", "type": "query", "allValue": ".*", "includeAll": true}
  ]},
  "panels": [
    {"id": 1, "type": "row", "title": "Calls", "gridPos": {"x": 0, "y": 0, "w": 24, "h": 1}},
    {"id": 2, "type": "timeseries", "title": "Calls/s", "gridPos": {"x": 0, "y": 1, "w": 12, "h": 8},
     "fieldConfig": {"defaults": {"unit": "reqps", "custom": {"fillOpacity": 10}}},
     "targets": [{"refId": "A", "expr": "sum by (message) (rate(c{message=~\"$procedure\"}[$__rate_interval]))", "legendFormat": "{{message}}"}]},
    {"id": 3, "type": "stat", "title": "Pending", "gridPos": {"x": 12, "y": 1, "w": 12, "h": 8},
     "targets": [{"refId": "A", "expr": "sum(p)"}]},
    {"id": 4, "type": "row", "title": "Log path", "collapsed": true, "gridPos": {"x": 0, "y": 9, "w": 24, "h": 1},
     "panels": [{"id": 5, "type": "timeseries", "title": "Lines/s", "gridPos": {"x": 0, "y": 10, "w": 24, "h": 8}}]}
  ]
}`

func loadTestDashboard(t *testing.T) *Dashboard {
	t.Helper()
	path := filepath.Join(t.TempDir(), "dashboard.json")
	if err := os.WriteFile(path, []byte(testDashboard), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestLoad(t *testing.T) {
	d := loadTestDashboard(t)
	if d.ID != nil || d.UID != "wamp" || d.SchemaVersion != 39 || len(d.Templating.List) != 3 || len(d.Panels) != 4 {
		t.Errorf("read %+v", d)
	}
	if u := d.Panels[1].FieldConfig.Defaults; u.Unit != "reqps" || u.Custom.FillOpacity != 10 {
		t.Errorf("panel 2 field defaults %+v", u)
	}
	if g := d.Panels[1].GridPos; g != (GridPos{X: 0, Y: 1, W: 12, H: 8}) {
		t.Errorf("panel 2 gridPos %+v", g)
	}

	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"panels": 1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("Load of bad JSON: %v, want an error naming the file", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("Load of a missing file: no error")
	}
}

func TestGraphPanelsWalksRows(t *testing.T) {
	var ids []int
	for _, p := range loadTestDashboard(t).GraphPanels() {
		ids = append(ids, p.ID)
	}
	if want := []int{2, 3, 5}; !slices.Equal(ids, want) {
		t.Errorf("graph panels %v, want %v (rows left out, a collapsed row's panels in)", ids, want)
	}
}

func TestExpandVariables(t *testing.T) {
	values := map[string]string{"procedure": ".*", "__rate_interval": "8s"}
	for _, tc := range []struct{ expr, want string }{
		{`rate(c{message=~"$procedure"}[$__rate_interval])`, `rate(c{message=~".*"}[8s])`},
		{`c{message=~"${procedure}"}`, `c{message=~".*"}`},
		{`c{message=~"${procedure:regex}"}`, `c{message=~".*"}`},
		{`c{message=~"[[procedure]]"}`, `c{message=~".*"}`},
		{`c{message=~"[[procedure:pipe]]"}`, `c{message=~".*"}`},
		{`sum(c)`, `sum(c)`},
	} {
		got, err := ExpandVariables(tc.expr, values)
		if err != nil || got != tc.want {
			t.Errorf("ExpandVariables(%s) = %s, %v; want %s", tc.expr, got, err, tc.want)
		}
	}
	_, err := ExpandVariables(`c{realm=~"$realm", x="${other}"}[$__rate_interval]`, values)
	if err == nil || !strings.Contains(err.Error(), "$realm") || !strings.Contains(err.Error(), "${other}") {
		t.Errorf("unknown variables: error %v, want one naming $realm and ${other}", err)
	}
}

func TestVariableValues(t *testing.T) {
	got := loadTestDashboard(t).VariableValues(8 * time.Second)
	want := map[string]string{"__rate_interval": "8s", "__interval": "8s", "__range": "8s", "procedure": ".*", "realm": ".*"}
	if len(got) != len(want) {
		t.Errorf("values %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("values[%s] = %q, want %q", k, got[k], v)
		}
	}
}

func TestLegends(t *testing.T) {
	format := "{{message}} in {{ realm }}"
	labels := LegendLabels(format)
	if !slices.Equal(labels, []string{"message", "realm"}) {
		t.Errorf("LegendLabels(%q) = %q", format, labels)
	}
	if got := LegendLabels("calls"); got != nil {
		t.Errorf("LegendLabels without placeholders = %q, want none", got)
	}
	if got := FormatLegend(format, labels, "hello1"+LegendSeparator+"realm1"); got != "hello1 in realm1" {
		t.Errorf("FormatLegend = %q", got)
	}
	if got := FormatLegend(format, labels, "hello1"); got != "hello1 in " {
		t.Errorf("FormatLegend with a value short = %q", got)
	}
	if got := FormatLegend("calls", nil, ""); got != "calls" {
		t.Errorf("FormatLegend without labels = %q", got)
	}
}

func TestNiceTicks(t *testing.T) {
	for _, tc := range []struct {
		lo, hi float64
		n      int
		want   []float64
	}{
		{0, 1, 4, []float64{0, 0.25, 0.5, 0.75, 1}},
		{0, 7, 3, []float64{0, 2.5, 5, 7.5}},
		{0, 950, 5, []float64{0, 200, 400, 600, 800, 1000}},
		{-3, 3, 2, []float64{-5, 0, 5}},
	} {
		if got := niceTicks(tc.lo, tc.hi, tc.n); !slices.Equal(got, tc.want) {
			t.Errorf("niceTicks(%v, %v, %d) = %v, want %v", tc.lo, tc.hi, tc.n, got, tc.want)
		}
	}
}

func TestFormatValue(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		unit string
		want string
	}{
		{0, "s", "0 s"},
		{2.5e-5, "s", "25 µs"},
		{0.0123, "s", "12.3 ms"},
		{-0.002, "s", "-2 ms"},
		{150, "s", "150 s"},
		{0.5, "percentunit", "50%"},
		{0.1234, "percentunit", "12.3%"},
		{1500, "reqps", "1.5 kreq/s"},
		{12, "ops", "12 ops/s"},
		{2.5e6, "Bps", "2.5 MB/s"},
		{3e9, "Bps", "3 GB/s"},
		{3, "", "3"},
		{1234, "short", "1.23 k"},
		{0.126, "", "0.13"},
	} {
		if got := formatValue(tc.v, tc.unit); got != tc.want {
			t.Errorf("formatValue(%v, %q) = %q, want %q", tc.v, tc.unit, got, tc.want)
		}
	}
}

func TestSegments(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	got := segments([]float64{nan, 1, 2, nan, inf, 3})
	if want := [][2]int{{1, 3}, {5, 6}}; !slices.Equal(got, want) {
		t.Errorf("segments = %v, want %v", got, want)
	}
	if got := segments([]float64{nan}); got != nil {
		t.Errorf("segments of no number = %v", got)
	}
}

func TestRender(t *testing.T) {
	d := loadTestDashboard(t)
	axis := TimeAxis{Start: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC), Step: 2 * time.Second, N: 91}
	if at := axis.At(90); !at.Equal(axis.Start.Add(3 * time.Minute)) {
		t.Errorf("At(90) = %v", at)
	}
	ramp := make([]float64, axis.N)
	for i := range ramp {
		ramp[i] = float64(i) * 20
	}
	ramp[40] = math.NaN()
	page := Render(d, map[int][]Series{
		2: {{Legend: "hello1", Values: ramp}},
		3: {{Legend: "", Values: []float64{1, 2, 7, math.NaN()}}},
	}, axis)
	if page.Width != pageWidth || page.Height <= 0 {
		t.Errorf("page %dx%d", page.Width, page.Height)
	}
	for _, want := range []string{
		"<title>WAMP &lt;router&gt;</title>", // escaped
		">Calls/s<", ">Pending<", "Log path",
		"hello1",                  // the legend
		"500 req/s", "1.5 kreq/s", // the y axis, in the panel's unit
		">7<",                             // the stat's last number
		`fill-opacity="0.10"`,             // the fill of 10%
		"2026-12-01 10:00:00 to 10:03:00", // the range
	} {
		if !strings.Contains(page.HTML, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page.HTML, "Lines/s") {
		t.Error("a collapsed row's panel is drawn")
	}
	if n := strings.Count(page.HTML, "<polyline"); n != 3 { // the ramp in two runs, the stat's sparkline
		t.Errorf("%d polylines, want 3", n)
	}
	empty := Render(d, nil, axis)
	if n := strings.Count(empty.HTML, "No data"); n != 2 {
		t.Errorf("without history: %d panels say No data, want 2", n)
	}
}
