package builder_test

import (
	"testing"

	"paas/builder"
)

func TestRunImage(t *testing.T) {
	const label = "io.buildpacks.builder.metadata"
	for _, tc := range []struct {
		name    string
		labels  map[string]string
		want    string
		wantErr bool
	}{
		{name: "images, as pack 0.30+ writes", labels: map[string]string{label: `{"images":[{"image":"paas/cnb-run:1"}],"stack":{"runImage":{"image":"old/run:1"}}}`}, want: "paas/cnb-run:1"},
		{name: "the stack's run image of older builders", labels: map[string]string{label: `{"stack":{"runImage":{"image":"old/run:1"}}}`}, want: "old/run:1"},
		{name: "no run image", labels: map[string]string{label: `{}`}, want: ""},
		{name: "not a builder", labels: map[string]string{"other": "x"}, wantErr: true},
		{name: "no labels", labels: nil, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := builder.RunImage(tc.labels)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("RunImage = %q, %v; want %q, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}
