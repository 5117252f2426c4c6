package builder

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"paas/internal/output"
	"strings"

	"github.com/docker/docker/pkg/jsonmessage"
)

// indent is put before every line of build output, like Dokku does.
const indent = "       "

// lineWriter writes whole lines, each prefixed with indent, to out and flushes
// out after each line when out can be flushed. Partial lines wait in buf until
// their newline arrives or Close is called.
type lineWriter struct {
	out io.Writer
	buf []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := w.buf[:i]
		w.buf = w.buf[i+1:]
		if err := w.emit(line); err != nil {
			return len(p), err
		}
	}
}

// Close writes a pending partial line.
func (w *lineWriter) Close() error {
	if len(w.buf) == 0 {
		return nil
	}
	line := w.buf
	w.buf = nil
	return w.emit(line)
}

func (w *lineWriter) emit(line []byte) error {
	// Carriage returns come from progress bars drawn in place; keep what was
	// drawn last.
	line = bytes.TrimRight(line, "\r")
	if i := bytes.LastIndexByte(line, '\r'); i >= 0 {
		line = line[i+1:]
	}
	if _, err := fmt.Fprintf(w.out, "%s%s\n", indent, line); err != nil {
		return err
	}
	output.Flush(w.out)
	return nil
}

// streamResult is what a JSON message stream told besides its text.
type streamResult struct {
	imageID string // from a build's aux message
	digest  string // from a push's aux message
}

// readStream decodes a daemon JSON message stream (build or push), writes its
// text to out line by line as it arrives and returns the first error message
// the daemon put in the stream. showStatus selects whether status messages
// (push progress) are written too; progress bars never are.
func readStream(r io.Reader, out io.Writer, showStatus bool) (streamResult, error) {
	var res streamResult
	lw := &lineWriter{out: out}
	defer lw.Close()
	dec := json.NewDecoder(r)
	seen := map[string]string{} // last status written per layer id
	for {
		var m jsonmessage.JSONMessage
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return res, nil
			}
			return res, fmt.Errorf("read daemon output: %w", err)
		}
		if m.Error != nil && m.Error.Message != "" {
			return res, errors.New(strings.TrimSpace(m.Error.Message))
		}
		if m.ErrorMessage != "" { //nolint:staticcheck // older daemons set only this
			return res, errors.New(strings.TrimSpace(m.ErrorMessage)) //nolint:staticcheck
		}
		if m.Aux != nil {
			var aux struct {
				ID     string
				Digest string
			}
			if json.Unmarshal(*m.Aux, &aux) == nil {
				if aux.ID != "" {
					res.imageID = aux.ID
				}
				if aux.Digest != "" {
					res.digest = aux.Digest
				}
			}
		}
		if m.Stream != "" {
			if _, err := io.WriteString(lw, m.Stream); err != nil {
				return res, err
			}
		}
		if showStatus && m.Status != "" && (m.Progress == nil || m.Progress.Current == 0 && m.Progress.Total == 0) {
			if m.ID == "" {
				fmt.Fprintf(lw, "%s\n", m.Status)
				continue
			}
			// Intermediate layer states are noise in a push log.
			if m.Status == "Preparing" || m.Status == "Waiting" || seen[m.ID] == m.Status {
				continue
			}
			seen[m.ID] = m.Status
			fmt.Fprintf(lw, "%s: %s\n", m.ID, m.Status)
		}
	}
}
