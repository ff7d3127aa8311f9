package analytics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metricsWindow is the window of the node's gauges.
const metricsWindow = 7

var (
	descMessages = prometheus.NewDesc("matrixos_analytics_messages_7d",
		"Messages in the node's rooms over the last 7 days (to the end of the current hour).", nil, nil)
	descCurrentHour = prometheus.NewDesc("matrixos_analytics_messages_current_hour",
		"Messages in the node's rooms in the current hour (UTC).", nil, nil)
	descActive = prometheus.NewDesc("matrixos_analytics_active_members_7d",
		"Users who sent a message in the node's rooms over the last 7 days.", nil, nil)
	descReply = prometheus.NewDesc("matrixos_analytics_median_reply_seconds_7d",
		"Median delay of a reply to another member's message over the last 7 days (0 without replies).", nil, nil)
	descForecast = prometheus.NewDesc("matrixos_analytics_forecast_next_hour_messages",
		"Messages the node's activity forecast expects in the next hour (absent while the node has under 6 hours of history).", nil, nil)
)

// Collectors are the node's analytics gauges, computed at each scrape
// from the bucket tables (a node Report over 7 days).
func (s *Service) Collectors() []prometheus.Collector { return []prometheus.Collector{collector{s}} }

type collector struct{ s *Service }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMessages, descCurrentHour, descActive, descReply, descForecast} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rep, err := c.s.Report(ctx, "", metricsWindow)
	if err != nil {
		c.s.opts.Log.Warn("analytics: gauges", "err", err)
		for _, d := range []*prometheus.Desc{descMessages, descCurrentHour, descActive, descReply, descForecast} {
			ch <- prometheus.NewInvalidMetric(d, err)
		}
		return
	}
	var median float64
	if rep.MedianReplySeconds != nil {
		median = *rep.MedianReplySeconds
	}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	gauge(descMessages, float64(rep.Messages))
	gauge(descCurrentHour, float64(rep.Hours[len(rep.Hours)-1]))
	gauge(descActive, float64(rep.ActiveMembers))
	gauge(descReply, median)
	if len(rep.Forecast.Hours) > 0 {
		gauge(descForecast, rep.Forecast.Hours[0])
	}
}
