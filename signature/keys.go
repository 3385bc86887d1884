package signature

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/taskjob/task-job/task"
)

// Limits on a secret. MinSecretBytes matches the HMAC-SHA256 output size:
// a shorter secret is easier to guess than the MAC it protects.
// MaxSecretBytes only keeps a misplaced large file from being read whole.
const (
	MinSecretBytes = 32
	MaxSecretBytes = 4096
)

// Keyring maps key ids to secrets. It is read-only once built and safe for
// concurrent use.
type Keyring struct {
	keys map[string][]byte
}

// NewKeyring builds a keyring from key id → secret, checking ids and
// secret lengths as LoadKeys does. The secrets are copied.
func NewKeyring(keys map[string][]byte) (*Keyring, error) {
	k := &Keyring{keys: make(map[string][]byte, len(keys))}
	for id, secret := range keys {
		if err := checkKeyID(id); err != nil {
			return nil, err
		}
		if err := checkSecret(secret); err != nil {
			return nil, fmt.Errorf("signature: key %q: %w", id, err)
		}
		k.keys[id] = slices.Clone(secret)
	}
	return k, nil
}

// IDs returns the key ids, sorted, e.g. to log which keys are accepted.
func (k *Keyring) IDs() []string {
	ids := make([]string, 0, len(k.keys))
	for id := range k.keys {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (k *Keyring) secret(id string) ([]byte, bool) {
	s, ok := k.keys[id]
	return s, ok
}

// LoadKeys reads a key directory: each regular file is one key, its name
// the key id and its content the secret (see the package documentation).
// Files whose names start with "." are skipped, so that editor files and
// the "..data" links of a Kubernetes secret volume do not count.
//
// Like sshd with its host keys, it refuses a directory or key file that
// group or others may read or write, or that is owned by neither root nor
// the current user: a secret others can read is no secret, and one others
// can write lets them pick it.
func LoadKeys(dir string) (*Keyring, error) {
	if err := checkPrivateDir(dir); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("signature: read key directory: %w", err)
	}
	k := &Keyring{keys: make(map[string][]byte)}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		path := filepath.Join(dir, name)
		if err := checkKeyID(name); err != nil {
			return nil, fmt.Errorf("%w (file %s)", err, path)
		}
		secret, err := readSecret(path)
		if err != nil {
			return nil, err
		}
		if err := checkSecret(secret); err != nil {
			return nil, fmt.Errorf("signature: key file %s: %w", path, err)
		}
		k.keys[name] = secret
	}
	if len(k.keys) == 0 {
		return nil, fmt.Errorf("signature: key directory %s holds no keys; add one file per key, named after the key id", dir)
	}
	return k, nil
}

// readSecret reads one key file after checking it, trimming one trailing
// newline ("\n" or "\r\n") that editors and echo add.
func readSecret(path string) ([]byte, error) {
	f, err := openKeyFile(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := checkPrivateFile(f, path); err != nil {
		return nil, err
	}
	buf := make([]byte, MaxSecretBytes+3) // room for "\r\n" and one byte more
	n, err := io.ReadFull(f, buf)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return nil, fmt.Errorf("signature: read key file %s: %w", path, err)
	}
	if n == len(buf) {
		return nil, fmt.Errorf("signature: key file %s is over %d bytes; it should hold only the secret", path, MaxSecretBytes)
	}
	b := buf[:n]
	if s, ok := strings.CutSuffix(string(b), "\n"); ok {
		s, _ = strings.CutSuffix(s, "\r")
		b = []byte(s)
	}
	return slices.Clone(b), nil
}

func checkKeyID(id string) error {
	ok := id != "" && !strings.HasPrefix(id, ".") && len(id) <= task.MaxIDBytes
	for i := 0; ok && i < len(id); i++ {
		c := id[i]
		ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
	}
	if !ok {
		return fmt.Errorf("signature: key id %q is not valid: use 1 to %d of A-Z a-z 0-9 . _ -, not starting with a dot", id, task.MaxIDBytes)
	}
	return nil
}

func checkSecret(secret []byte) error {
	switch {
	case len(secret) < MinSecretBytes:
		return fmt.Errorf("secret is %d bytes, under the minimum of %d; generate one with: head -c 32 /dev/urandom | base64", len(secret), MinSecretBytes)
	case len(secret) > MaxSecretBytes:
		return fmt.Errorf("secret is %d bytes, over the limit of %d", len(secret), MaxSecretBytes)
	}
	return nil
}

// Key is one signing key: its id and secret.
type Key struct {
	ID     string
	Secret []byte
}

// LoadKeyFile reads one key file as a client holds it: the file name is
// the key id, as in a key directory, and the same checks apply to the file.
func LoadKeyFile(path string) (Key, error) {
	id := filepath.Base(path)
	if err := checkKeyID(id); err != nil {
		return Key{}, fmt.Errorf("%w (file %s)", err, path)
	}
	secret, err := readSecret(path)
	if err != nil {
		return Key{}, err
	}
	if err := checkSecret(secret); err != nil {
		return Key{}, fmt.Errorf("signature: key file %s: %w", path, err)
	}
	return Key{ID: id, Secret: secret}, nil
}
