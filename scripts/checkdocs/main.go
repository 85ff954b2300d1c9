// Command checkdocs checks that the docs and the binary's --help agree: every
// switchboard command and flag written in README.md, docs/ and deploy/
// exists in --help (or `token --help`), every variable of the README's
// configuration table and of the example env file is an option, and every
// option's variable is documented. It prints each missing name and exits 1.
//
//	go run ./scripts/checkdocs path/to/switchboard
//
// scripts/check-docs.sh builds the binary and runs it; CI runs that through
// scripts/test.sh.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

var (
	flagRe     = regexp.MustCompile(`--[a-z][a-z0-9-]*`)
	optionLine = regexp.MustCompile(`(?m)^\s+--(\S+)\s+([A-Z][A-Z0-9_]*)\s+default`)
	usageCmd   = regexp.MustCompile(`(?m)^\s+switchboard ([a-z]+) `)
	// A switchboard command line: the binary at command position (start of
	// a line or after a shell prompt, "$(", "&&", "go run", a path, or
	// variable assignments), and its arguments up to a shell operator.
	commandRe = regexp.MustCompile("(?:^|`|\\$ |\\$\\(|&& |ExecStart=)" + `(?:[A-Z_]+=\S* )*(?:go run )?(?:\S*/)?switchboard((?:[ \t]+[^\s|;&)` + "`" + `]+)*)`)
	tableVar  = regexp.MustCompile("^\\| ((?:`[A-Z][A-Z0-9_]+`(?: / )?)+) \\|")
	backtickV = regexp.MustCompile("`([A-Z][A-Z0-9_]+)`")
	envLine   = regexp.MustCompile(`(?m)^#?\s?([A-Z][A-Z0-9_]+)=`)
	inlineFl  = regexp.MustCompile("`(--[a-z][a-z0-9-]*)`")
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: checkdocs path/to/switchboard")
		os.Exit(2)
	}
	bin := os.Args[1]
	help := output(bin, "--help")
	tokenHelp := output(bin, "token", "--help")

	flags := set(flagRe.FindAllString(help, -1))
	tokenFlags := set(append(flagRe.FindAllString(tokenHelp, -1), "--help"))
	vars := map[string]string{} // variable → flag
	for _, m := range optionLine.FindAllStringSubmatch(help, -1) {
		vars[m[2]] = m[1]
	}
	commands := map[string]bool{}
	for _, m := range usageCmd.FindAllStringSubmatch(help, -1) {
		commands[m[1]] = true
	}
	if len(vars) == 0 || len(commands) == 0 {
		fail([]string{"could not read the options and commands from --help"})
	}

	docs := append([]string{"README.md"}, glob("docs/*.md")...)
	files := append(append([]string{}, docs...), glob("deploy/*")...)
	var problems []string
	for _, f := range files {
		text := read(f)
		lines := strings.Split(text, "\n")
		for i, line := range lines {
			where := fmt.Sprintf("%s:%d", f, i+1)
			if i+1 < len(lines) && strings.Contains(lines[i+1], "unknown flag") {
				continue // a transcript showing a typo on purpose
			}
			for _, m := range commandRe.FindAllStringSubmatch(line, -1) {
				problems = append(problems, checkCommand(where, strings.Fields(m[1]), commands, flags, tokenFlags)...)
			}
			if strings.HasSuffix(f, ".md") {
				for _, m := range inlineFl.FindAllStringSubmatch(line, -1) {
					if !flags[m[1]] && !tokenFlags[m[1]] {
						problems = append(problems, fmt.Sprintf("%s: flag %s is not in switchboard --help", where, m[1]))
					}
				}
			}
			if f == "README.md" {
				if m := tableVar.FindStringSubmatch(line); m != nil {
					for _, v := range backtickV.FindAllStringSubmatch(m[1], -1) {
						if _, ok := vars[v[1]]; !ok {
							problems = append(problems, fmt.Sprintf("%s: variable %s is not in switchboard --help", where, v[1]))
						}
					}
				}
			}
		}
		if strings.HasSuffix(f, ".env.example") {
			for _, m := range envLine.FindAllStringSubmatch(text, -1) {
				if _, ok := vars[m[1]]; !ok {
					problems = append(problems, fmt.Sprintf("%s: variable %s is not in switchboard --help", f, m[1]))
				}
			}
		}
	}
	all := ""
	for _, f := range docs {
		all += read(f)
	}
	readme := read("README.md")
	names := make([]string, 0, len(vars))
	for v := range vars {
		names = append(names, v)
	}
	sort.Strings(names)
	for _, v := range names {
		word := regexp.MustCompile(`\b` + v + `\b`)
		if !word.MatchString(readme) {
			problems = append(problems, fmt.Sprintf("README.md: option %s (--%s) of switchboard --help is not in the configuration table", v, vars[v]))
		} else if !word.MatchString(all) {
			problems = append(problems, fmt.Sprintf("docs: option %s (--%s) of switchboard --help is not documented", v, vars[v]))
		}
	}
	if len(problems) > 0 {
		fail(problems)
	}
	fmt.Printf("docs and --help agree: %d options, %d commands\n", len(vars), len(commands))
}

// checkCommand checks one switchboard command line's subcommand and flags.
func checkCommand(where string, args []string, commands, flags, tokenFlags map[string]bool) []string {
	var problems []string
	known := flags
	if len(args) > 0 && regexp.MustCompile(`^[a-z]+$`).MatchString(args[0]) {
		if !commands[args[0]] {
			return []string{fmt.Sprintf("%s: command switchboard %s is not in switchboard --help", where, args[0])}
		}
		known, args = tokenFlags, args[1:]
	}
	for _, a := range args {
		if !strings.HasPrefix(a, "--") {
			continue
		}
		name, _, _ := strings.Cut(a, "=")
		if !known[name] {
			problems = append(problems, fmt.Sprintf("%s: flag %s is not in the --help of that command", where, name))
		}
	}
	return problems
}

func output(bin string, args ...string) string {
	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		fail([]string{fmt.Sprintf("%s %s: %v", bin, strings.Join(args, " "), err)})
	}
	return string(out)
}

func read(name string) string {
	b, err := os.ReadFile(name)
	if err != nil {
		fail([]string{err.Error()})
	}
	return string(b)
}

func glob(pattern string) []string {
	m, err := filepath.Glob(pattern)
	if err != nil {
		fail([]string{err.Error()})
	}
	return m
}

func set(xs []string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		m[x] = true
	}
	return m
}

func fail(problems []string) {
	for _, p := range problems {
		fmt.Fprintln(os.Stderr, "checkdocs:", p)
	}
	os.Exit(1)
}
