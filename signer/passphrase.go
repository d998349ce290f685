package signer

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/term"
)

// ErrNoPassphrase means a passphrase is needed but none can be obtained
// without a terminal.
var ErrNoPassphrase = errors.New("a key passphrase is needed: set the passphrase environment variable, or run in a terminal to be prompted")

// PassphraseSource returns a function that yields the passphrase from the
// environment variable env or, when it is unset and standard input is a
// terminal, from a prompt (asked once, cached). With confirm set, a prompted
// passphrase must be typed twice.
func PassphraseSource(env, prompt string, confirm bool) func() ([]byte, error) {
	var (
		once sync.Once
		pw   []byte
		err  error
	)
	return func() ([]byte, error) {
		once.Do(func() { pw, err = readPassphrase(env, prompt, confirm) })
		return pw, err
	}
}

func readPassphrase(env, prompt string, confirm bool) ([]byte, error) {
	if v, ok := os.LookupEnv(env); ok {
		if v == "" {
			return nil, fmt.Errorf("%s is set but empty: an empty passphrase protects nothing", env)
		}
		return []byte(v), nil
	}
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return nil, fmt.Errorf("%w (%s)", ErrNoPassphrase, env)
	}
	fmt.Fprint(os.Stderr, prompt)
	pw, err := term.ReadPassword(fd)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return nil, fmt.Errorf("read passphrase: %w", err)
	}
	if len(pw) == 0 {
		return nil, errors.New("empty passphrase refused")
	}
	if confirm {
		fmt.Fprint(os.Stderr, "Repeat passphrase: ")
		again, err := term.ReadPassword(fd)
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return nil, fmt.Errorf("read passphrase: %w", err)
		}
		if string(again) != string(pw) {
			return nil, errors.New("passphrases do not match")
		}
	}
	return pw, nil
}
