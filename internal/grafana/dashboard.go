// Package grafana reads a Grafana dashboard's JSON (panels, targets,
// templating variables) and draws panels' query results as SVG, for the
// tests that prove the dashboard in deploy/grafana.
//
// It knows Grafana's JSON model only as far as those tests read it, and
// draws without Grafana (which the test machines cannot install): each
// panel laid out by its gridPos on a plain HTML page of inline SVG in
// Grafana's dark theme, which WriteScreenshot photographs with headless
// Chromium. Querying is the caller's: it hands Render each panel's series.
package grafana

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// Dashboard is what the tests read of a Grafana dashboard's JSON model.
type Dashboard struct {
	ID            any     `json:"id"` // null: Grafana assigns one on import
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []Panel `json:"panels"`
	Templating    struct {
		List []Variable `json:"list"`
	} `json:"templating"`
}

// Panel is one panel of a dashboard, or a row of them.
type Panel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	GridPos    GridPos        `json:"gridPos"`
	Collapsed  bool           `json:"collapsed"`
	Panels     []Panel        `json:"panels"` // a collapsed row's panels
	Datasource *DatasourceRef `json:"datasource"`
	Targets    []Target       `json:"targets"`
	// FieldConfig.Defaults: the unit Grafana formats values in, and how
	// opaque (0–100) a line's fill is.
	FieldConfig struct {
		Defaults struct {
			Unit   string `json:"unit"`
			Custom struct {
				FillOpacity float64 `json:"fillOpacity"`
			} `json:"custom"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
}

// GridPos is where a panel sits on the dashboard's grid of 24 columns.
type GridPos struct{ X, Y, W, H int }

// DatasourceRef names the datasource of a panel, target or variable.
type DatasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// Target is one query of a panel.
type Target struct {
	RefID        string         `json:"refId"`
	Expr         string         `json:"expr"`
	LegendFormat string         `json:"legendFormat"`
	Datasource   *DatasourceRef `json:"datasource"`
}

// Variable is one of the dashboard's templating variables.
type Variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"` // a string, or for Prometheus query variables an object
	Definition string          `json:"definition"`
	Multi      bool            `json:"multi"`
	IncludeAll bool            `json:"includeAll"`
	AllValue   string          `json:"allValue"`
	Datasource *DatasourceRef  `json:"datasource"`
	Current    struct {
		Value any `json:"value"`
	} `json:"current"`
}

// Load reads the dashboard in the JSON file at path.
func Load(path string) (*Dashboard, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var d Dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &d, nil
}

// GraphPanels returns every panel that shows data, in the order of the
// JSON, walking rows and the panels a collapsed row holds.
func (d *Dashboard) GraphPanels() []Panel { return graphPanels(d.Panels) }

func graphPanels(panels []Panel) []Panel {
	var out []Panel
	for _, p := range panels {
		if p.Type == "row" {
			out = append(out, graphPanels(p.Panels)...)
			continue
		}
		out = append(out, p)
		out = append(out, graphPanels(p.Panels)...)
	}
	return out
}

// templateVar matches Grafana's variable syntaxes: ${name}, ${name:format},
// [[name]] and $name.
var templateVar = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\[\[(\w+)(?::\w+)?\]\]|\$(\w+)`)

// ExpandVariables substitutes Grafana's variables in expr with values, and
// fails on one it has no value for.
func ExpandVariables(expr string, values map[string]string) (string, error) {
	var unknown []string
	out := templateVar.ReplaceAllStringFunc(expr, func(m string) string {
		sub := templateVar.FindStringSubmatch(m)
		name := sub[1] + sub[2] + sub[3]
		v, ok := values[name]
		if !ok {
			unknown = append(unknown, m)
			return m
		}
		return v
	})
	if len(unknown) > 0 {
		return "", fmt.Errorf("no value for %v", unknown)
	}
	return out, nil
}

// VariableValues are the values Grafana gives the dashboard's variables as
// it opens: "All" of each query variable (its allValue), and window for
// the range variables ($__rate_interval, $__interval, $__range).
func (d *Dashboard) VariableValues(window time.Duration) map[string]string {
	w := model.Duration(window).String()
	values := map[string]string{"__rate_interval": w, "__interval": w, "__range": w}
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			values[v.Name] = v.AllValue
		}
	}
	return values
}

// legendPlaceholder is a label in a legend format: {{label}}.
var legendPlaceholder = regexp.MustCompile(`\{\{\s*(\w+)\s*\}\}`)

// LegendLabels are the labels a target's legend format shows ({{label}}).
func LegendLabels(legend string) []string {
	var labels []string
	for _, m := range legendPlaceholder.FindAllStringSubmatch(legend, -1) {
		labels = append(labels, m[1])
	}
	return labels
}

// LegendSeparator joins a series' legend label values into one label
// value (with PromQL's label_join), the key FormatLegend splits.
const LegendSeparator = "\x1f"

// FormatLegend fills a legend format's {{label}}s with the values joined
// by LegendSeparator in key, as Grafana does with a series' labels; labels
// are the format's (LegendLabels), and a format without any is its own
// legend.
func FormatLegend(format string, labels []string, key string) string {
	if len(labels) == 0 {
		return format
	}
	values := strings.Split(key, LegendSeparator)
	i := 0
	return legendPlaceholder.ReplaceAllStringFunc(format, func(string) string {
		if i >= len(values) {
			return ""
		}
		i++
		return values[i-1]
	})
}
