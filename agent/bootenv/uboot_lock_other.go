//go:build !unix

package bootenv

// lockEnv does nothing where there is no flock (and no libubootenv).
func lockEnv(string) (unlock func()) { return func() {} }
