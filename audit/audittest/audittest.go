// Package audittest helps tests forge audit records as an intruder
// would: a line edited and its own hash recomputed, so that it parses and
// only the chain or a mirror's copy shows the change.
package audittest

import (
	"bytes"
	"crypto/sha256"
	"fmt"
)

// Rehash recomputes the hash of one audit line (with or without its
// newline) after its body was edited; the result ends with a newline.
func Rehash(line []byte) []byte {
	const suffixLen = len(`,"hash":"`) + 64 + 2
	body := bytes.TrimSuffix(line, []byte{'\n'})
	canon := append(append([]byte{}, body[:len(body)-suffixLen]...), '}')
	sum := sha256.Sum256(canon)
	return fmt.Appendf(nil, `%s,"hash":"%x"}`+"\n", canon[:len(canon)-1], sum[:])
}
