package jail

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSplit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr string // substring of the error; "" means success
	}{
		{name: "one word", in: "install.sh", want: []string{"install.sh"}},
		{name: "words and runs of blanks", in: "  a \t b   c ", want: []string{"a", "b", "c"}},
		{name: "single quotes keep everything", in: `'a b;|&<>()$*?[~#{' x`, want: []string{"a b;|&<>()$*?[~#{", "x"}},
		{name: "double quotes with escapes", in: `"a \" \\ \$ \` + "`" + ` \n b"`, want: []string{"a \" \\ $ ` \\n b"}},
		{name: "double quotes keep operators", in: `"a;b|c*d"`, want: []string{"a;b|c*d"}},
		{name: "escaped space", in: `has\ space.sh arg`, want: []string{"has space.sh", "arg"}},
		{name: "escaped operators", in: `a\;b \$x \* \~ \#`, want: []string{"a;b", "$x", "*", "~", "#"}},
		{name: "adjacent quoted parts form one word", in: `a'b c'"d"e`, want: []string{"ab cde"}},
		{name: "empty quoted word kept", in: `x '' ""`, want: []string{"x", "", ""}},
		{name: "tilde and hash inside a word", in: "a~b c#d", want: []string{"a~b", "c#d"}},
		{name: "quoted tilde", in: `'~'/x`, want: []string{"~/x"}},
		{name: "close bracket and brace alone", in: "a] b}", want: []string{"a]", "b}"}},
		{name: "tab inside quotes", in: "'a\tb'", want: []string{"a\tb"}},
		{name: "non-ASCII text", in: `héllo "wörld ✓" \é`, want: []string{"héllo", "wörld ✓", "é"}},
		{name: "assignment-looking word is just a word", in: "A=1 x.sh", want: []string{"A=1", "x.sh"}},
		{name: "256 words", in: strings.Repeat("w ", 256), want: slices.Repeat([]string{"w"}, 256)},

		{name: "semicolon", in: "a;b", wantErr: `unquoted ';' at byte 1 is a shell operator`},
		{name: "pipe", in: "a | b", wantErr: "shell operator"},
		{name: "and", in: "a && b", wantErr: "shell operator"},
		{name: "background", in: "a &", wantErr: "shell operator"},
		{name: "redirect out", in: "a >/etc/passwd", wantErr: "shell operator"},
		{name: "redirect in", in: "a </etc/shadow", wantErr: "shell operator"},
		{name: "subshell", in: "(a)", wantErr: "shell operator"},
		{name: "command substitution", in: "$(id)", wantErr: `unquoted '$' at byte 0 would be a shell expansion`},
		{name: "variable", in: "echo $HOME", wantErr: "shell expansion"},
		{name: "backticks", in: "a `id`", wantErr: "shell expansion"},
		{name: "dollar in double quotes", in: `"$HOME"`, wantErr: "inside double quotes would be expanded"},
		{name: "backtick in double quotes", in: "\"`id`\"", wantErr: "inside double quotes would be expanded"},
		{name: "glob star", in: "x.sh *", wantErr: "would be a glob"},
		{name: "glob question mark", in: "x?.sh", wantErr: "would be a glob"},
		{name: "glob bracket", in: "x[12].sh", wantErr: "would be a glob"},
		{name: "brace expansion", in: "x{1,2}.sh", wantErr: "brace expansion"},
		{name: "leading tilde", in: "~/x.sh", wantErr: "home-directory expansion"},
		{name: "leading tilde of a later word", in: "x.sh ~root", wantErr: "home-directory expansion"},
		{name: "comment", in: "x.sh #rest", wantErr: "start of a comment"},
		{name: "unterminated single quote", in: "x 'abc", wantErr: "unterminated single quote at byte 2"},
		{name: "unterminated double quote", in: `x "abc\"`, wantErr: "unterminated double quote at byte 2"},
		{name: "trailing backslash", in: `x\`, wantErr: "lone backslash"},
		{name: "newline", in: "x.sh\nid", wantErr: "control character U+000A at byte 4"},
		{name: "carriage return", in: "x.sh\r", wantErr: "control character U+000D"},
		{name: "quoted newline", in: "'a\nb'", wantErr: "control character U+000A"},
		{name: "escaped newline", in: "a\\\nb", wantErr: "control character U+000A"},
		{name: "NUL", in: "x.sh\x00y", wantErr: "control character U+0000"},
		{name: "escape character", in: "x\x1b[31m", wantErr: "control character U+001B"},
		{name: "DEL", in: "x\x7f", wantErr: "control character U+007F"},
		{name: "C1 control", in: "x\u0085", wantErr: "control character U+0085"},
		{name: "invalid UTF-8", in: "x\xff", wantErr: "not valid UTF-8"},
		{name: "empty", in: "", wantErr: "the cmdline is empty"},
		{name: "only blanks", in: " \t ", wantErr: "the cmdline is empty"},
		{name: "257 words", in: strings.Repeat("w ", 257), wantErr: "more than 256 words"},
		{name: "over 64 KiB", in: strings.Repeat("a", 64<<10+1), wantErr: "65537 bytes long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Split(tt.in)
			if tt.wantErr != "" {
				assertRefused(t, err, tt.in, tt.wantErr)
				if got != nil {
					t.Errorf("Split(%q) = %q with an error; want no words", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Split(%q): %v", tt.in, err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Split(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestSplitAcceptsExactly64KiB(t *testing.T) {
	t.Parallel()
	in := strings.Repeat("a", 64<<10)
	got, err := Split(in)
	if err != nil || len(got) != 1 || got[0] != in {
		t.Fatalf("Split of a 64 KiB word: %d words, err %v; want the word back", len(got), err)
	}
}

func TestJoin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		words []string
		want  string
	}{
		{[]string{"install.sh", "feature/homestead"}, "install.sh feature/homestead"},
		{[]string{"a b", "it's", ""}, `'a b' 'it'\''s' ''`},
		{[]string{"~x", "#x", "$x", "*"}, `'~x' '#x' '$x' '*'`},
		{[]string{"ключ"}, `'ключ'`},
	}
	for _, tt := range tests {
		got := Join(tt.words)
		if got != tt.want {
			t.Errorf("Join(%q) = %q, want %q", tt.words, got, tt.want)
		}
		back, err := Split(got)
		if err != nil || !slices.Equal(back, tt.words) {
			t.Errorf("Split(Join(%q)) = %q, %v; want the words back", tt.words, back, err)
		}
	}
}

// FuzzSplit checks that Split never panics, never returns a word with NUL or a control character
// it promised to refuse, and that quoting its words with Join and splitting again is lossless.
func FuzzSplit(f *testing.F) {
	for _, s := range []string{
		"install.sh feature/homestead", "bash x.sh", `a 'b c' "d \" e" f\ g`, `'it'\''s'`,
		"a;b", "$(id)", "`id`", "x.sh *", "~/x", "x #c", "x\ny", "x\x00", `"unterminated`, `x\`,
		`"\$HOME"`, "''", `"" x`, "\t", "é \\é", "a{b,c}", strings.Repeat("w ", 300),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		words, err := Split(in)
		if err != nil {
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("Split(%q) error %v is not ErrRefused", in, err)
			}
			return
		}
		if len(words) == 0 || len(words) > maxWords {
			t.Fatalf("Split(%q) returned %d words", in, len(words))
		}
		for _, w := range words {
			if strings.ContainsRune(w, 0) || !utf8.ValidString(w) {
				t.Fatalf("Split(%q) returned word %q with NUL or invalid UTF-8", in, w)
			}
		}
		joined := Join(words)
		if len(joined) > maxCmdlineBytes {
			return // quoting can grow the text past the limit; nothing to compare
		}
		again, err := Split(joined)
		if err != nil || !slices.Equal(again, words) {
			t.Fatalf("Split(%q) = %q; Split(Join) of that = %q, %v", in, words, again, err)
		}
	})
}

// FuzzJoin checks that any words free of control characters survive Join then Split.
func FuzzJoin(f *testing.F) {
	f.Add("a", "b c")
	f.Add("it's", "")
	f.Add("~x", "$(id)")
	f.Add("*", "\t")
	f.Fuzz(func(t *testing.T, a, b string) {
		words := []string{a, b}
		for _, w := range words {
			if !utf8.ValidString(w) || strings.ContainsFunc(w, isRefusedControl) {
				return
			}
		}
		joined := Join(words)
		if len(joined) > maxCmdlineBytes {
			return
		}
		got, err := Split(joined)
		if err != nil || !slices.Equal(got, words) {
			t.Fatalf("Split(Join(%q)) = %q, %v", words, got, err)
		}
	})
}

func isRefusedControl(r rune) bool {
	_, err := Split("'" + string(r) + "'")
	return err != nil
}

// assertRefused fails unless err is a *RefusedError for cmdline that matches ErrRefused and
// whose message contains want.
func assertRefused(t *testing.T, err error, cmdline, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error for %q; want one containing %q", trim(cmdline), want)
	}
	if !errors.Is(err, ErrRefused) {
		t.Errorf("error %v does not match ErrRefused", err)
	}
	var re *RefusedError
	if !errors.As(err, &re) {
		t.Fatalf("error %T is not a *RefusedError", err)
	}
	if re.Cmdline != cmdline {
		t.Errorf("RefusedError.Cmdline = %q, want %q", trim(re.Cmdline), trim(cmdline))
	}
	if !strings.HasPrefix(err.Error(), "jail: ") || !strings.Contains(err.Error(), want) {
		t.Errorf("error %q, want it to start with \"jail: \" and contain %q", err, want)
	}
}

func trim(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
