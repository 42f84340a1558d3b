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

// series is one elector's rounds in one group of a box chart.
type series struct {
	elector, group string
	rounds         []time.Duration
}

// handoverChart draws the graceful handovers of both electors per N.
func handoverChart(results []*scaleResult, path string) error {
	var ss []series
	for _, r := range results {
		ss = append(ss, series{elector: r.elector, group: fmt.Sprintf("N=%d replicas", r.n), rounds: r.handover})
	}
	return boxChart("Graceful handover (SIGTERM of the leader to the next status file)", ss, path)
}

// lifecycleChart draws, per operation on real pods, both electors' time
// from the call to the next leader's status file.
func lifecycleChart(r *lifecycleResult, path string) error {
	var ss []series
	for _, op := range lifecycleOps {
		for _, e := range r.electors {
			if s := r.stats[e][op.name]; s != nil {
				ss = append(ss, series{elector: e, group: op.name, rounds: s.took})
			}
		}
	}
	return boxChart("Real pods, app stops in 5 s: the call to the next leader's status file", ss, path)
}

// boxChart draws a box plot per elector and group, with every round as a
// point beside it, on a log-scale y axis, groups in the order first seen.
func boxChart(title string, ss []series, path string) error {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = "milliseconds (log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = true
	var groups, electors []string
	for _, s := range ss {
		if !slices.Contains(groups, s.group) {
			groups = append(groups, s.group)
		}
		if !slices.Contains(electors, s.elector) {
			electors = append(electors, s.elector)
		}
	}
	colors := []color.Color{color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}}
	shapes := []draw.GlyphDrawer{draw.CircleGlyph{}, draw.TriangleGlyph{}}
	const spread = 0.35 // of the distance between two groups
	for e, name := range electors {
		c := colors[e%len(colors)]
		var points plotter.XYs
		for _, s := range ss {
			if s.elector != name || len(s.rounds) == 0 {
				continue
			}
			x := float64(slices.Index(groups, s.group)) + spread*(float64(e)-float64(len(electors)-1)/2)
			values := make(plotter.Values, len(s.rounds))
			for i, d := range s.rounds {
				values[i] = max(float64(d)/float64(time.Millisecond), 0.01) // a log axis has no 0
				// Spread the points a little beside the box, round by round.
				points = append(points, plotter.XY{X: x + 0.12 + 0.06*float64(i)/float64(len(s.rounds)), Y: values[i]})
			}
			box, err := plotter.NewBoxPlot(vg.Points(18), x, values)
			if err != nil {
				return fmt.Errorf("box plot of %s, %s: %w", name, s.group, err)
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
	p.NominalX(groups...)
	p.X.Min, p.X.Max = -0.6, float64(len(groups))-0.4
	p.Add(plotter.NewGrid())
	if err := p.Save(vg.Length(max(4, 2.2*float64(len(groups))))*vg.Inch, 4.5*vg.Inch, path); err != nil {
		return fmt.Errorf("save chart %s: %w", path, err)
	}
	return nil
}
