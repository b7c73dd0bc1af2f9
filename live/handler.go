package live

import (
	"embed"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"

	"github.com/munnerz/goautoneg"
)

//go:embed static
var static embed.FS

// Handler serves the page at /ui (index.html and its script and style
// under /ui/) and the Snapshot as JSON at /ui/data.json.
func (s *Sampler) Handler(log *slog.Logger) http.Handler {
	files, _ := fs.Sub(static, "static")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ui/data.json", func(w http.ResponseWriter, r *http.Request) {
		b, err := s.JSON()
		if err != nil {
			log.Error("live page data", slog.Any("err", err))
			http.Error(w, "cannot encode the page's data", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(b)
	})
	page := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, files, "index.html")
	}
	mux.HandleFunc("GET /ui", page)
	mux.HandleFunc("GET /ui/{$}", page)
	mux.Handle("GET /ui/", http.StripPrefix("/ui/", http.FileServerFS(files)))
	return mux
}

// PrefersHTML says whether a request's Accept header prefers a web page to
// the metrics formats: a browser's does (it lists text/html first), while
// Prometheus, curl (*/*) and anything else that does not name text/html
// get the metrics, as before the page existed.
func PrefersHTML(r *http.Request) bool {
	accept := r.Header.Get("Accept")
	named := false // text/html itself, not refused (q=0)
	for _, a := range goautoneg.ParseAccept(accept) {
		named = named || a.Type == "text" && a.SubType == "html" && a.Q > 0
	}
	if !named {
		return false
	}
	// The metrics formats first: on a tie (*/*) they win.
	best := goautoneg.Negotiate(accept, []string{"text/plain", "application/openmetrics-text", "application/vnd.google.protobuf", "text/html"})
	mt, _, _ := mime.ParseMediaType(best)
	return mt == "text/html"
}
