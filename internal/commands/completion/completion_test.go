package completion

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBashCompletes sources the bash script in a real bash and completes
// as a user typing would: the subcommands, a subcommand's flags.
func TestBashCompletes(t *testing.T) {
	bashPath, err := exec.LookPath("bash")
	if err != nil {
		t.Fatalf("bash is needed to run the bash completion: %v", err)
	}
	var script bytes.Buffer
	if code := Main([]string{"bash"}, &script, os.Stderr); code != 0 {
		t.Fatalf("exit %d", code)
	}
	file := filepath.Join(t.TempDir(), "completion.bash")
	if err := os.WriteFile(file, script.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		line string // the words typed, the last one being completed
		want string
	}{
		{"leader-elector st", "status"},
		{"leader-elector re", "resign"},
		{"leader-elector status --co", "--context"},
		{"leader-elector status --w", "--wait"},
		{"leader-elector await --f", "--file --follower"},
		{"leader-elector resign --t", "--timeout --to"},
		{"leader-elector completion z", "zsh"},
	} {
		words := strings.Fields(tc.line)
		quoted := make([]string, len(words))
		for i, w := range words {
			quoted[i] = "'" + w + "'"
		}
		cmd := exec.Command(bashPath, "--norc", "-c", `source "$0"; COMP_WORDS=(`+strings.Join(quoted, " ")+`); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _leader_elector; printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' '`, file)
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != tc.want {
			t.Errorf("%q completes to %q (%v), want %q", tc.line, strings.TrimSpace(string(out)), err, tc.want)
		}
	}
}

func TestMainRefusesWhatItCannotPrint(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "want one shell (bash, zsh or fish); got 0 arguments"},
		{[]string{"powershell"}, 2, `shell "powershell": want bash, zsh or fish`},
		{[]string{"--help"}, 0, "source <(leader-elector completion bash)"},
		{[]string{"zsh"}, 0, "bashcompinit"},
		{[]string{"fish"}, 0, "__fish_seen_subcommand_from status' -l context"},
	} {
		var stdout, stderr bytes.Buffer
		if code := Main(tc.args, &stdout, &stderr); code != tc.code || !strings.Contains(stdout.String()+stderr.String(), tc.want) {
			t.Errorf("completion %v: exit %d, output %q; want %d and %q", tc.args, code, stdout.String()+stderr.String(), tc.code, tc.want)
		}
	}
}
