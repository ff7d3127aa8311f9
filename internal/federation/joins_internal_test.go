package federation

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/matrixos/matrixos/internal/netguard"
)

// TestResidentServers: the servers_in_room of a send_join answer is kept
// only as valid server names, each once, without this server or IP
// literals the outbound guard refuses, and bounded.
func TestResidentServers(t *testing.T) {
	huge := make([]string, 0, 5*maxServersInRoom)
	for i := range 5 * maxServersInRoom {
		huge = append(huge, fmt.Sprintf("s%d.example", i%(2*maxServersInRoom)))
	}
	tests := []struct {
		name  string
		allow []string
		in    []string
		want  []string
		count int // when want is nil: the length wanted
	}{
		{name: "valid names kept in order", in: []string{"b.example", "a.example:8448", "[2606:4700::1111]:8448", "8.8.8.8"},
			want: []string{"b.example", "a.example:8448", "[2606:4700::1111]:8448", "8.8.8.8"}},
		{name: "duplicates and self dropped", in: []string{"a.example", "self.example", "a.example", "b.example"},
			want: []string{"a.example", "b.example"}},
		{name: "invalid names dropped", in: []string{"", "a b", "x.example:notaport", "[::1", strings.Repeat("a", 300), "ok.example", "https://evil.example/"},
			want: []string{"ok.example"}},
		{name: "private literals dropped", in: []string{"127.0.0.1:8448", "10.0.0.1", "[::1]", "169.254.169.254", "192.168.1.1:443", "public.example"},
			want: []string{"public.example"}},
		{name: "private literals allowed by allow_private_networks", allow: []string{"127.0.0.0/8"}, in: []string{"127.0.0.1:8448", "10.0.0.1"},
			want: []string{"127.0.0.1:8448"}},
		{name: "huge list bounded", in: huge, count: maxServersInRoom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			guard, err := netguard.New(tt.allow)
			if err != nil {
				t.Fatalf("guard: %v", err)
			}
			s := &Service{serverName: "self.example", guard: guard}
			got := s.residentServers(tt.in)
			if tt.want == nil {
				if len(got) != tt.count {
					t.Fatalf("%d servers kept, want %d", len(got), tt.count)
				}
				sorted := slices.Clone(got)
				slices.Sort(sorted)
				if len(slices.Compact(sorted)) != len(got) {
					t.Fatal("duplicates kept")
				}
				return
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}
