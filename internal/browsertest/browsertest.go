// Package browsertest starts Debian's chromium, headless, for the browser
// tests, in a network namespace of its own: Docker adding and removing veth
// interfaces during a test makes a browser in the host's namespace fail its
// page loads with ERR_NETWORK_CHANGED. The namespace has only a loopback
// (IPv6 off), where each of the given ports of 127.0.0.1 is forwarded to the
// same port of the host's 127.0.0.1.
package browsertest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"syscall"

	"github.com/chromedp/chromedp"
	"golang.org/x/sys/unix"
)

// Exe returns the path of Debian's chromium.
func Exe() (string, error) {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("chromium is required for the browser tests (scripts/install.sh --deps installs it)")
}

// Start starts a headless chromium (its profile in a new temporary
// directory) in a network namespace whose 127.0.0.1:PORT reaches the
// host's for each of ports, and returns a tab's context and what stops it
// all. Every host name resolves to 127.0.0.1.
func Start(ports []string, extra ...chromedp.ExecAllocatorOption) (context.Context, func(), error) {
	exe, err := Exe()
	if err != nil {
		return nil, nil, err
	}
	profile, err := os.MkdirTemp("", "paas-chromium")
	if err != nil {
		return nil, nil, err
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(profile),
		// Test servers' certificates are their own CA's.
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.Flag("host-resolver-rules", "MAP * 127.0.0.1"),
		chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) {
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Cloneflags: syscall.CLONE_NEWNET}
		}),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(opts, extra...)...)
	ctx, cancel := chromedp.NewContext(actx)
	var lns []net.Listener
	stop := func() {
		for _, ln := range lns {
			ln.Close()
		}
		cancel()
		cancelAlloc()
		os.RemoveAll(profile)
	}
	if err := chromedp.Do(ctx); err != nil {
		stop()
		return nil, nil, fmt.Errorf("start chromium: %w", err)
	}
	pid := chromedp.FromContext(ctx).Browser.Process().Pid
	lns, err = listenInNetns(pid, ports)
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("chromium's network namespace: %w", err)
	}
	for i, ln := range lns {
		go forward(ln, "127.0.0.1:"+ports[i])
	}
	return ctx, stop, nil
}

// listenInNetns sets up the network namespace of the process pid (loopback
// up, IPv6 off) and listens on 127.0.0.1:PORT in it for each port. It works
// on an OS thread that joins the namespace and is then thrown away, so no
// other goroutine ever runs in the namespace.
func listenInNetns(pid int, ports []string) ([]net.Listener, error) {
	type result struct {
		lns []net.Listener
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		var lns []net.Listener
		err := func() error {
			f, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
			if err != nil {
				return err
			}
			defer f.Close()
			if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
				return fmt.Errorf("setns: %w", err)
			}
			if err := loopbackUp(); err != nil {
				return err
			}
			for _, p := range []string{"all", "default", "lo"} {
				if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+p+"/disable_ipv6", []byte("1"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("turn IPv6 off: %w", err)
				}
			}
			for _, port := range ports {
				ln, err := net.Listen("tcp4", "127.0.0.1:"+port)
				if err != nil {
					return err
				}
				lns = append(lns, ln)
			}
			return nil
		}()
		if err != nil {
			for _, ln := range lns {
				ln.Close()
			}
			lns = nil
		}
		done <- result{lns, err}
	}()
	r := <-done
	return r.lns, r.err
}

func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	return nil
}

// forward copies each connection accepted on ln to and from a connection
// to addr (dialed from the host's namespace).
func forward(ln net.Listener, addr string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			u, err := net.Dial("tcp", addr)
			if err != nil {
				return
			}
			defer u.Close()
			go func() { io.Copy(u, c); u.(*net.TCPConn).CloseWrite() }()
			io.Copy(c, u)
		}()
	}
}
