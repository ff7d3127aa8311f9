package analytics

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"time"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Chart geometry, in pixels.
const (
	chartWidth  = 800
	chartHeight = 320
	marginLeft  = 56
	marginRight = 12
	marginTop   = 28
	marginBot   = 34
)

var (
	colorBackground = color.RGBA{255, 255, 255, 255}
	colorAxis       = color.RGBA{60, 60, 60, 255}
	colorGrid       = color.RGBA{225, 225, 225, 255}
	colorHistory    = color.RGBA{52, 101, 164, 255}
	colorForecast   = color.RGBA{245, 121, 0, 255}
)

// ChartPNG draws the report's messages per hour as bars, followed by the
// forecast hours in another colour, with the hours' scale on the left,
// the days along the bottom and a title, and encodes it as PNG.
func ChartPNG(rep *Report, title string) ([]byte, error) {
	img := image.NewRGBA(image.Rect(0, 0, chartWidth, chartHeight))
	draw.Draw(img, img.Bounds(), image.NewUniform(colorBackground), image.Point{}, draw.Src)
	plot := image.Rect(marginLeft, marginTop, chartWidth-marginRight, chartHeight-marginBot)

	values := make([]float64, 0, len(rep.Hours)+len(rep.Forecast.Hours))
	for _, n := range rep.Hours {
		values = append(values, float64(n))
	}
	values = append(values, rep.Forecast.Hours...)
	top := niceCeiling(values)

	// Grid lines and the scale: four steps from zero to top.
	for i := 0; i <= 4; i++ {
		y := plot.Max.Y - i*plot.Dy()/4
		hline(img, plot.Min.X, plot.Max.X, y, colorGrid)
		label := fmt.Sprint(int(top) * i / 4)
		text(img, plot.Min.X-6-7*len(label), y+4, label)
	}
	// Bars: history, then forecast.
	step := float64(plot.Dx()) / float64(max(len(values), 1))
	for i, v := range values {
		c := colorHistory
		if i >= len(rep.Hours) {
			c = colorForecast
		}
		x0 := plot.Min.X + int(float64(i)*step)
		x1 := max(x0+1, plot.Min.X+int(float64(i+1)*step)-boolInt(step >= 3))
		h := int(math.Round(v / top * float64(plot.Dy())))
		draw.Draw(img, image.Rect(x0, plot.Max.Y-h, x1, plot.Max.Y), image.NewUniform(c), image.Point{}, draw.Src)
	}
	// Days along the bottom, thinned to fit.
	days := (len(values) + 23) / 24
	every := max(1, days*40/plot.Dx()+1)
	for d := 0; d < days; d++ {
		x := plot.Min.X + int(float64(d*24)*step)
		vline(img, x, plot.Max.Y, plot.Max.Y+4, colorAxis)
		if d%every == 0 {
			day := time.UnixMilli(rep.From).UTC().AddDate(0, 0, d)
			text(img, x+2, plot.Max.Y+16, day.Format("01-02"))
		}
	}
	hline(img, plot.Min.X, plot.Max.X, plot.Max.Y, colorAxis)
	vline(img, plot.Min.X, plot.Min.Y, plot.Max.Y, colorAxis)
	text(img, marginLeft, 18, title)
	text(img, plot.Max.X-300, chartHeight-6, "messages per hour (UTC); forecast in orange")

	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("encode chart: %w", err)
	}
	return buf.Bytes(), nil
}

// niceCeiling is a round top for the scale, at least 4, above every
// value.
func niceCeiling(values []float64) float64 {
	top := 4.0
	for _, v := range values {
		top = max(top, v)
	}
	magnitude := math.Pow(10, math.Floor(math.Log10(top)))
	for _, m := range []float64{1, 2, 4, 5, 10} {
		if c := m * magnitude; c >= top && math.Mod(c, 4) == 0 {
			return c
		}
	}
	return math.Ceil(top/4) * 4
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func hline(img draw.Image, x0, x1, y int, c color.Color) {
	for x := x0; x <= x1; x++ {
		img.Set(x, y, c)
	}
}

func vline(img draw.Image, x, y0, y1 int, c color.Color) {
	for y := y0; y <= y1; y++ {
		img.Set(x, y, c)
	}
}

// text draws s with its baseline at y, in the built-in 7×13 bitmap font.
func text(img draw.Image, x, y int, s string) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(colorAxis), Face: basicfont.Face7x13,
		Dot: fixed.P(x, y)}
	d.DrawString(s)
}
