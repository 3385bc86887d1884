package jail

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on a cmdline. A task's cmdline names a script and a few words; anything near these sizes
// is a mistake or an attack, and refusing it early keeps error messages and audit records small.
const (
	maxCmdlineBytes = 64 << 10
	maxWords        = 256
)

// Split splits cmdline into words as a POSIX shell would (single quotes, double quotes with \" \\ \$ \`
// escapes, backslash outside quotes), but performs no expansion. It refuses (error) unquoted shell
// operators and expansions the user may expect a shell to perform: ; | & < > ( ) $ ` and glob characters
// * ? [ and a word-leading ~, unterminated quotes, NUL and control characters (newline, CR, etc.), an
// empty cmdline, more than 256 words or more than 64 KiB. Quoted occurrences are literal data and allowed.
//
// Where a shell would do something other than take the text literally, Split refuses instead of
// guessing, so that nobody is surprised by a word that silently differs from what they wrote:
//   - an unquoted { (brace expansion in bash) and a word-leading # (a comment) are refused too;
//   - inside double quotes a shell still expands $ and `, so there they must be escaped (\$, \`)
//     or the text single-quoted; single-quoted text is always literal;
//   - tab separates words like a space; every other control character is refused even when quoted,
//     as is text that is not valid UTF-8.
//
// Every error is a *RefusedError.
func Split(cmdline string) ([]string, error) {
	if len(cmdline) > maxCmdlineBytes {
		return nil, refusef(cmdline, "the cmdline is %d bytes long; at most %d are accepted", len(cmdline), maxCmdlineBytes)
	}
	if !utf8.ValidString(cmdline) {
		return nil, refusef(cmdline, "the cmdline is not valid UTF-8")
	}
	for i, r := range cmdline {
		if r != '\t' && unicode.IsControl(r) {
			return nil, refusef(cmdline, "control character %U at byte %d; a cmdline is one line of printable text, so pass such data through cmd_args", r, i)
		}
	}

	var (
		words  []string
		word   strings.Builder
		inWord bool // a word has started, even if it is still empty (as after '')
	)
	endWord := func() error {
		if !inWord {
			return nil
		}
		if len(words) == maxWords {
			return refusef(cmdline, "the cmdline has more than %d words; pass long argument lists through cmd_args", maxWords)
		}
		words = append(words, word.String())
		word.Reset()
		inWord = false
		return nil
	}

	// Every byte Split treats specially is ASCII, and no byte of a multi-byte UTF-8 sequence is, so
	// scanning bytes is exact.
	for i := 0; i < len(cmdline); {
		c := cmdline[i]
		switch {
		case c == ' ' || c == '\t':
			if err := endWord(); err != nil {
				return nil, err
			}
			i++
		case c == '\'':
			end := strings.IndexByte(cmdline[i+1:], '\'')
			if end < 0 {
				return nil, refusef(cmdline, "unterminated single quote at byte %d; close it with '", i)
			}
			word.WriteString(cmdline[i+1 : i+1+end])
			inWord = true
			i += end + 2
		case c == '"':
			next, err := splitDoubleQuoted(cmdline, i, &word)
			if err != nil {
				return nil, err
			}
			inWord = true
			i = next
		case c == '\\':
			if i+1 == len(cmdline) {
				return nil, refusef(cmdline, "the cmdline ends with a lone backslash; escape it as \\\\ or quote it")
			}
			word.WriteByte(cmdline[i+1]) // continuation bytes of a multi-byte rune follow as plain bytes
			inWord = true
			i += 2
		case strings.IndexByte(";|&<>()", c) >= 0:
			return nil, refusef(cmdline, "unquoted %q at byte %d is a shell operator, but no shell runs the cmdline; quote it if it is meant literally, or submit one task per command", c, i)
		case c == '$' || c == '`':
			return nil, refusef(cmdline, "unquoted %q at byte %d would be a shell expansion, but no shell runs the cmdline; single-quote it if it is meant literally", c, i)
		case c == '*' || c == '?' || c == '[':
			return nil, refusef(cmdline, "unquoted %q at byte %d would be a glob, but nothing expands it; name the files, or quote it if it is meant literally", c, i)
		case c == '{':
			return nil, refusef(cmdline, "unquoted '{' at byte %d would be a brace expansion, but nothing expands it; quote it if it is meant literally", i)
		case (c == '~' || c == '#') && !inWord:
			what := "a home-directory expansion"
			if c == '#' {
				what = "the start of a comment"
			}
			return nil, refusef(cmdline, "unquoted %q at byte %d would be %s in a shell, but no shell runs the cmdline; quote it if it is meant literally", c, i, what)
		default:
			word.WriteByte(c)
			inWord = true
			i++
		}
	}
	if err := endWord(); err != nil {
		return nil, err
	}
	if len(words) == 0 {
		return nil, refusef(cmdline, "the cmdline is empty; name a script in cmd_dir, e.g. \"install.sh\"")
	}
	return words, nil
}

// splitDoubleQuoted appends the text of the double-quoted string that starts at cmdline[open] to
// word and returns the index just past its closing quote.
func splitDoubleQuoted(cmdline string, open int, word *strings.Builder) (int, error) {
	for i := open + 1; i < len(cmdline); {
		switch c := cmdline[i]; c {
		case '"':
			return i + 1, nil
		case '\\':
			if i+1 < len(cmdline) && strings.IndexByte("\"\\$`", cmdline[i+1]) >= 0 {
				word.WriteByte(cmdline[i+1])
				i += 2
				continue
			}
			word.WriteByte(c) // as in a shell, other backslashes inside double quotes are literal
			i++
		case '$', '`':
			return 0, refusef(cmdline, "%q at byte %d inside double quotes would be expanded by a shell, but no shell runs the cmdline; write \\%c or use single quotes", c, i, c)
		default:
			word.WriteByte(c)
			i++
		}
	}
	return 0, refusef(cmdline, "unterminated double quote at byte %d; close it with \"", open)
}

// Join quotes words so that Split(Join(words)) returns them unchanged (for words free of control
// characters, within Split's limits). Words made only of safe characters are left bare, so the
// usual command reads naturally in logs and audit records.
func Join(words []string) string {
	var b strings.Builder
	for i, w := range words {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(quote(w))
	}
	return b.String()
}

// quote returns w as one shell word: bare if it is safe, else single-quoted.
func quote(w string) string {
	if w != "" && strings.IndexFunc(w, unsafeInWord) < 0 {
		return w
	}
	return "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
}

func unsafeInWord(r rune) bool {
	switch {
	case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		return false
	}
	return !strings.ContainsRune("@%+=:,./_-", r)
}

// refusef returns a *RefusedError for cmdline with a formatted reason.
func refusef(cmdline, format string, args ...any) *RefusedError {
	return &RefusedError{Cmdline: cmdline, Reason: fmt.Sprintf(format, args...)}
}
