// Command devkamailio runs, by hand, the Kamailio presence server the tests
// use: the same configuration, on the port given, until interrupted.
//
//	go run ./internal/siptest/devkamailio -port 5060
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/contactcenter/presence-provider/internal/siptest"
)

func main() {
	port := flag.Int("port", 5060, "UDP and TCP port")
	host := flag.String("host", "127.0.0.1", "address to listen on (0.0.0.0 in a container)")
	dir := flag.String("dir", "", "working folder (default: a new temporary one)")
	user := flag.String("auth-user", "", "REGISTER needs this digest user (with -auth-password)")
	password := flag.String("auth-password", "", "the digest password")
	flag.Parse()
	if err := run(*port, *dir, siptest.KamailioOptions{Host: *host, AuthUser: *user, AuthPassword: *password}); err != nil {
		fmt.Fprintln(os.Stderr, "devkamailio:", err)
		os.Exit(1)
	}
}

func run(port int, dir string, opts siptest.KamailioOptions) error {
	bin, err := exec.LookPath("kamailio")
	if err != nil {
		return fmt.Errorf("kamailio not found; install it: apt-get install -y kamailio kamailio-presence-modules")
	}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "devkamailio"); err != nil {
			return err
		}
	}
	args, err := siptest.PrepareDir(dir, port, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "devkamailio: presence server on %s:%d (udp, tcp), folder %s\n", opts.Host, port, dir)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-stop
		_ = cmd.Process.Signal(syscall.SIGTERM)
	}()
	return cmd.Wait()
}
