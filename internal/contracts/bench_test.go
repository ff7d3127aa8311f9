package contracts_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/matrixos/matrixos/internal/contracts"
	"github.com/matrixos/matrixos/internal/cputime"
)

// BenchmarkContractCall measures one call of the poll example (a vote by
// a new voter: a fresh instance, three state reads, three writes and four
// result fields) with its state in memory: the runtime's cost per input
// event, without the database and the result event.
//
//	go test -tags goolm -run '^$' -bench BenchmarkContractCall ./internal/contracts/
func BenchmarkContractCall(b *testing.B) {
	rt := newRuntime(b, contracts.DefaultLimits)
	p := compile(b, rt, "examples/poll.c")
	state := contracts.MapState{}
	ctx := context.Background()
	var gas int64
	b.ReportAllocs()
	b.ResetTimer()
	meter := cputime.Start()
	for i := 0; b.Loop(); i++ {
		out, err := p.Run(ctx, vote(fmt.Sprintf("@u%d:x", i), "yes"), state)
		if err != nil || out.Err != nil {
			b.Fatalf("run: %v %v", err, out.Err)
		}
		state.Apply(out.Writes)
		gas = out.GasUsed
	}
	meter.Report(b, b.N)
	b.ReportMetric(float64(gas), "gas/op")
}
