// Package completion prints the shell completion of leader-elector's
// subcommands and their flags: `leader-elector completion bash|zsh|fish`.
package completion

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// Flags are each subcommand's flags, as its --help lists them; a test
// keeps the two equal.
var Flags = map[string][]string{
	"await":      {"--leader", "--follower", "--timeout", "--file", "--help"},
	"status":     {"--namespace", "-n", "--output", "-o", "--label-key", "--selector", "-l", "--kubeconfig", "--context", "--wait", "--timeout", "--help"},
	"resign":     {"--to", "--timeout", "--help"},
	"completion": {"bash", "zsh", "fish"},
}

// Subcommands are the words leader-elector takes first.
var Subcommands = []string{"await", "status", "resign", "version", "completion", "help", "--help", "--version"}

const usage = `Usage: leader-elector completion bash|zsh|fish

Prints the shell completion of the subcommands and their flags:
  bash:  source <(leader-elector completion bash)
  zsh:   source <(leader-elector completion zsh)
  fish:  leader-elector completion fish | source
`

// Main prints the completion script of the shell args[0] names.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && slices.Contains([]string{"-h", "-help", "--help"}, args[0]) {
		fmt.Fprint(stdout, usage)
		return 0
	}
	if len(args) != 1 {
		fmt.Fprintf(stderr, "leader-elector completion: want one shell (bash, zsh or fish); got %d arguments\n\n%s", len(args), usage)
		return 2
	}
	switch args[0] {
	case "bash":
		fmt.Fprint(stdout, bash())
	case "zsh":
		fmt.Fprint(stdout, "autoload -U +X bashcompinit && bashcompinit\n"+bash())
	case "fish":
		fmt.Fprint(stdout, fish())
	default:
		fmt.Fprintf(stderr, "leader-elector completion: shell %q: want bash, zsh or fish\n", args[0])
		return 2
	}
	return 0
}

func sortedKeys() []string {
	var ks []string
	for k := range Flags {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func bash() string {
	var b strings.Builder
	b.WriteString(`# bash completion for leader-elector (leader-elector completion bash)
_leader_elector() {
    local cur="${COMP_WORDS[COMP_CWORD]}" words=""
    if [ "$COMP_CWORD" -eq 1 ]; then
        words="` + strings.Join(Subcommands, " ") + `"
    else
        case "${COMP_WORDS[1]}" in
`)
	for _, k := range sortedKeys() {
		fmt.Fprintf(&b, "            %s) words=%q ;;\n", k, strings.Join(Flags[k], " "))
	}
	b.WriteString(`        esac
    fi
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o default -F _leader_elector leader-elector
`)
	return b.String()
}

func fish() string {
	var b strings.Builder
	b.WriteString("# fish completion for leader-elector (leader-elector completion fish)\n")
	b.WriteString("complete -c leader-elector -f\n")
	for _, s := range Subcommands {
		if !strings.HasPrefix(s, "-") {
			fmt.Fprintf(&b, "complete -c leader-elector -n __fish_use_subcommand -a %s\n", s)
		}
	}
	for _, k := range sortedKeys() {
		for _, f := range Flags[k] {
			switch {
			case strings.HasPrefix(f, "--"):
				fmt.Fprintf(&b, "complete -c leader-elector -n '__fish_seen_subcommand_from %s' -l %s\n", k, f[2:])
			case strings.HasPrefix(f, "-"):
				fmt.Fprintf(&b, "complete -c leader-elector -n '__fish_seen_subcommand_from %s' -s %s\n", k, f[1:])
			default:
				fmt.Fprintf(&b, "complete -c leader-elector -n '__fish_seen_subcommand_from %s' -a %s\n", k, f)
			}
		}
	}
	return b.String()
}
