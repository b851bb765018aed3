package server

import "github.com/prometheus/client_golang/prometheus"

// collector reports the router's view of the topology at scrape time.
type collector struct {
	s                         *Server
	stale, epoch, nodes, ctrl *prometheus.Desc
}

func newCollector(s *Server) *collector {
	return &collector{
		s:     s,
		stale: prometheus.NewDesc("veltrix_router_topology_stale", "1 when etcd stopped answering and the router serves from its last topology snapshot.", nil, nil),
		epoch: prometheus.NewDesc("veltrix_router_placement_epoch", "Epoch of the placement the router routes with.", nil, nil),
		nodes: prometheus.NewDesc("veltrix_router_storage_nodes", "Storage nodes registered in etcd, as the router sees them.", nil, nil),
		ctrl:  prometheus.NewDesc("veltrix_router_controller", "1 when this router runs the placement controller.", nil, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.stale
	ch <- c.epoch
	ch <- c.nodes
	ch <- c.ctrl
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	cl := c.s.cluster
	if cl == nil {
		return
	}
	v := cl.View()
	b := func(x bool) float64 {
		if x {
			return 1
		}
		return 0
	}
	ch <- prometheus.MustNewConstMetric(c.stale, prometheus.GaugeValue, b(cl.Stale()))
	ch <- prometheus.MustNewConstMetric(c.epoch, prometheus.GaugeValue, float64(v.Epoch))
	ch <- prometheus.MustNewConstMetric(c.nodes, prometheus.GaugeValue, float64(len(v.Snapshot.Nodes)))
	ch <- prometheus.MustNewConstMetric(c.ctrl, prometheus.GaugeValue, b(c.s.IsController()))
}
