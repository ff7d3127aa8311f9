package storage

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// Benchmarks for the write path on SQLite (synchronous=FULL): one write
// at a time (a commit each), many concurrent writes (batched into shared
// commits), and many statements inside one write. Run with
//
//	go test -run '^$' -bench . -benchmem ./internal/storage/

func benchDB(b *testing.B) *DB {
	b.Helper()
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(b.TempDir(), "bench.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	err = db.Migrate(ctx, []Migration{{Component: "bench", Version: 1, SQL: `
CREATE TABLE bench_rows (k BIGINT PRIMARY KEY, room TEXT NOT NULL, v TEXT NOT NULL);
CREATE INDEX bench_rows_room ON bench_rows (room, k);
`}})
	if err != nil {
		b.Fatal(err)
	}
	return db
}

const benchValue = `{"type":"m.room.message","content":{"msgtype":"m.text","body":"hello world"},"sender":"@alice:bench.test"}`

func insertRow(ctx context.Context, tx *Tx) error {
	pos := tx.NextPos()
	_, err := tx.Exec(ctx, "INSERT INTO bench_rows (k, room, v) VALUES ($1, $2, $3)", pos, "!room:bench.test", benchValue)
	return err
}

// BenchmarkWriteSerial is one Write at a time: each is its own
// transaction and fsync.
func BenchmarkWriteSerial(b *testing.B) {
	ctx := context.Background()
	db := benchDB(b)
	b.ReportAllocs()
	for b.Loop() {
		if err := db.Write(ctx, func(tx *Tx) error { return insertRow(ctx, tx) }); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteConcurrent is 32 writers at once on 2 CPUs (RunParallel
// with parallelism 16): the single writer groups them into shared
// transactions, each write in its own savepoint.
func BenchmarkWriteConcurrent(b *testing.B) {
	ctx := context.Background()
	db := benchDB(b)
	b.ReportAllocs()
	b.SetParallelism(16)
	batches0, writes0 := batchStats()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := db.Write(ctx, func(tx *Tx) error { return insertRow(ctx, tx) }); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	if batches, writes := batchStats(); batches > batches0 {
		b.ReportMetric((writes-writes0)/float64(batches-batches0), "writes/batch")
	}
}

// BenchmarkWriteStatements is the cost of one more statement inside a
// write (100 inserts per Write; ns/op is per insert).
func BenchmarkWriteStatements(b *testing.B) {
	ctx := context.Background()
	db := benchDB(b)
	const per = 100
	b.ReportAllocs()
	for i := 0; i < b.N; i += per {
		n := min(per, b.N-i)
		err := db.Write(ctx, func(tx *Tx) error {
			for range n {
				if err := insertRow(ctx, tx); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteStatementsPrepared is BenchmarkWriteStatements with the
// statement prepared once, for comparison: what a statement cache in Tx
// would save (Tx.Exec prepares its statement on every call).
func BenchmarkWriteStatementsPrepared(b *testing.B) {
	ctx := context.Background()
	db := benchDB(b)
	stmt, err := db.write.PrepareContext(ctx, db.rewrite("INSERT INTO bench_rows (k, room, v) VALUES ($1, $2, $3)"))
	if err != nil {
		b.Fatal(err)
	}
	defer stmt.Close()
	const per = 100
	b.ReportAllocs()
	for i := 0; i < b.N; i += per {
		n := min(per, b.N-i)
		err := db.Write(ctx, func(tx *Tx) error {
			st := tx.tx.StmtContext(ctx, stmt)
			for range n {
				if _, err := st.ExecContext(ctx, tx.NextPos(), "!room:bench.test", benchValue); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkQueryRow is one indexed read through the reader pool.
func BenchmarkQueryRow(b *testing.B) {
	ctx := context.Background()
	db := benchDB(b)
	if err := db.Write(ctx, func(tx *Tx) error {
		for range 1000 {
			if err := insertRow(ctx, tx); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	var k atomic.Int64
	b.ReportAllocs()
	for b.Loop() {
		var v string
		key := k.Add(1)%1000 + 1
		if err := db.QueryRow(ctx, "SELECT v FROM bench_rows WHERE k = $1", key).Scan(&v); err != nil {
			b.Fatal(err)
		}
	}
}

// batchStats reads the writer's batch-size histogram: batches and writes
// so far.
func batchStats() (batches uint64, writes float64) {
	var m dto.Metric
	if writeBatchSize.Write(&m) != nil || m.Histogram == nil {
		return 0, 0
	}
	return m.Histogram.GetSampleCount(), m.Histogram.GetSampleSum()
}

// BenchmarkQueryRowPrepared is BenchmarkQueryRow with a statement prepared
// once (database/sql keeps it prepared on each pool connection): the saving
// a statement cache in DB.Query would bring.
func BenchmarkQueryRowPrepared(b *testing.B) {
	ctx := context.Background()
	db := benchDB(b)
	if err := db.Write(ctx, func(tx *Tx) error {
		for range 1000 {
			if err := insertRow(ctx, tx); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	stmt, err := db.read.PrepareContext(ctx, db.rewrite("SELECT v FROM bench_rows WHERE k = $1"))
	if err != nil {
		b.Fatal(err)
	}
	defer stmt.Close()
	var k int64
	b.ReportAllocs()
	for b.Loop() {
		var v string
		k++
		if err := stmt.QueryRowContext(ctx, k%1000+1).Scan(&v); err != nil {
			b.Fatal(err)
		}
	}
}
