package testnode

import (
	"io"

	"github.com/rs/zerolog"
)

func zerologDiscard() zerolog.Logger { return zerolog.New(io.Discard) }
