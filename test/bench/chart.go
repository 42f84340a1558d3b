package main

import (
	"fmt"
	"image/color"
	"slices"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// handoverChart draws the graceful handovers of both electors per N: a box
// plot of each, with every round as a point, on a log-scale y axis.
func handoverChart(results []*scaleResult, path string) error {
	p := plot.New()
	p.Title.Text = "Graceful handover (SIGTERM of the leader to the next status file)"
	p.Y.Label.Text = "milliseconds (log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = true
	var ns []int
	var electors []string
	for _, r := range results {
		if !slices.Contains(ns, r.n) {
			ns = append(ns, r.n)
		}
		if !slices.Contains(electors, r.elector) {
			electors = append(electors, r.elector)
		}
	}
	colors := []color.Color{color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}}
	shapes := []draw.GlyphDrawer{draw.CircleGlyph{}, draw.TriangleGlyph{}}
	const spread = 0.35 // of the distance between two N
	for e, name := range electors {
		c := colors[e%len(colors)]
		var points plotter.XYs
		for _, r := range results {
			if r.elector != name || len(r.handover) == 0 {
				continue
			}
			x := float64(slices.Index(ns, r.n)) + spread*(float64(e)-float64(len(electors)-1)/2)
			values := make(plotter.Values, len(r.handover))
			for i, d := range r.handover {
				values[i] = max(float64(d)/float64(time.Millisecond), 0.01) // a log axis has no 0
				// Spread the points a little beside the box, round by round.
				points = append(points, plotter.XY{X: x + 0.12 + 0.06*float64(i)/float64(len(r.handover)), Y: values[i]})
			}
			box, err := plotter.NewBoxPlot(vg.Points(18), x, values)
			if err != nil {
				return fmt.Errorf("box plot of %s at N=%d: %w", name, r.n, err)
			}
			box.BoxStyle.Color, box.MedianStyle.Color, box.WhiskerStyle.Color = c, c, c
			box.GlyphStyle.Color = c
			p.Add(box)
		}
		if len(points) == 0 {
			continue
		}
		sc, err := plotter.NewScatter(points)
		if err != nil {
			return fmt.Errorf("points of %s: %w", name, err)
		}
		sc.GlyphStyle = draw.GlyphStyle{Color: c, Radius: vg.Points(1.8), Shape: shapes[e%len(shapes)]}
		p.Add(sc)
		p.Legend.Add(name, sc)
	}
	names := make([]string, len(ns))
	for i, n := range ns {
		names[i] = fmt.Sprintf("N=%d replicas", n)
	}
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.6, float64(len(ns))-0.4
	p.Add(plotter.NewGrid())
	if err := p.Save(vg.Length(max(4, 2.2*float64(len(ns))))*vg.Inch, 4.5*vg.Inch, path); err != nil {
		return fmt.Errorf("save chart %s: %w", path, err)
	}
	return nil
}
