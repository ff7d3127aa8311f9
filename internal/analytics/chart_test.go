package analytics

import (
	"bytes"
	"image/png"
	"testing"
)

func TestChartDecodes(t *testing.T) {
	hours := make([]int64, 7*24)
	for i := range hours {
		hours[i] = int64(i % 24)
	}
	rep := &Report{Days: 7, From: 1_700_000_000_000, Hours: hours, Forecast: forecast(hours, 0)}
	for _, tc := range []struct {
		name string
		rep  *Report
	}{{"a week", rep}, {"empty", &Report{Days: 1, Hours: make([]int64, 24), Forecast: forecast(nil, 0)}}} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := ChartPNG(tc.rep, "messages in !room:example.org")
			if err != nil {
				t.Fatal(err)
			}
			img, err := png.Decode(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("the chart does not decode: %v", err)
			}
			if got := img.Bounds().Size(); got.X != chartWidth || got.Y != chartHeight {
				t.Fatalf("chart is %v", got)
			}
			// A bar of the history and of the forecast were drawn.
			want := map[[3]uint32]bool{}
			for _, c := range []any{colorHistory, colorForecast} {
				r, g, b, _ := c.(interface{ RGBA() (r, g, b, a uint32) }).RGBA()
				want[[3]uint32{r, g, b}] = false
			}
			for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x++ {
				for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y++ {
					r, g, b, _ := img.At(x, y).RGBA()
					if _, ok := want[[3]uint32{r, g, b}]; ok {
						want[[3]uint32{r, g, b}] = true
					}
				}
			}
			if tc.name == "a week" {
				for c, seen := range want {
					if !seen {
						t.Fatalf("colour %v not drawn", c)
					}
				}
			}
		})
	}
}
