package threading_test

import (
	"testing"

	"github.com/matrixos/matrixos/internal/storage/pgtest"
)

func TestMain(m *testing.M) { pgtest.RunMain(m) }
