// Drives moby/spdystream (the SPDY library of the kubelet, kubectl and
// crictl) against a berth SPDY session over TCP, for session_interop_tests.rs.
//
//	go run . client ADDR   # Go opens streams, berth serves them
//	go run . server ADDR   # berth opens streams, Go serves them
package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"

	"github.com/moby/spdystream"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "FAIL: "+format+"\n", args...)
	os.Exit(1)
}

// echoRoundTrip writes size random bytes on a stream the peer echoes back,
// reading concurrently, then half-closes and checks what came back.
func echoRoundTrip(s *spdystream.Stream, size int) {
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		fail("rand: %v", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for off := 0; off < len(data); off += 32 * 1024 {
			end := off + 32*1024
			if end > len(data) {
				end = len(data)
			}
			if _, err := s.Write(data[off:end]); err != nil {
				fail("write: %v", err)
			}
		}
		if err := s.Close(); err != nil {
			fail("close: %v", err)
		}
	}()
	got, err := io.ReadAll(s)
	if err != nil {
		fail("read: %v", err)
	}
	wg.Wait()
	if !bytes.Equal(got, data) {
		fail("echo of %d bytes came back as %d different bytes", len(data), len(got))
	}
}

func runClient(conn net.Conn) {
	c, err := spdystream.NewConnection(conn, false)
	if err != nil {
		fail("new connection: %v", err)
	}
	go c.Serve(spdystream.NoOpStreamHandler)

	if _, err := c.Ping(); err != nil {
		fail("ping: %v", err)
	}

	// One big stream, then many concurrent small ones.
	s, err := c.CreateStream(http.Header{"Mode": {"echo"}}, nil, false)
	if err != nil {
		fail("create: %v", err)
	}
	if err := s.Wait(); err != nil {
		fail("wait reply: %v", err)
	}
	echoRoundTrip(s, 8<<20)

	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := c.CreateStream(http.Header{"Mode": {"echo"}}, nil, false)
			if err != nil {
				fail("create: %v", err)
			}
			if err := s.Wait(); err != nil {
				fail("wait reply: %v", err)
			}
			echoRoundTrip(s, 200*1024)
		}()
	}
	wg.Wait()

	// A stream reset from Go must reach berth as a reset.
	r, err := c.CreateStream(http.Header{"Mode": {"reset"}}, nil, false)
	if err != nil {
		fail("create: %v", err)
	}
	if err := r.Wait(); err != nil {
		fail("wait reply: %v", err)
	}
	if _, err := r.Write([]byte("x")); err != nil {
		fail("write: %v", err)
	}
	if err := r.Reset(); err != nil {
		fail("reset: %v", err)
	}
	// The berth side of the test checks that it saw the reset.
	if err := c.CloseWait(); err != nil {
		fail("close: %v", err)
	}
	fmt.Println("OK")
}

func runServer(conn net.Conn) {
	c, err := spdystream.NewConnection(conn, true)
	if err != nil {
		fail("new connection: %v", err)
	}
	c.Serve(func(s *spdystream.Stream) {
		if err := s.SendReply(http.Header{}, false); err != nil {
			fail("reply: %v", err)
		}
		go func() {
			if _, err := io.Copy(s, s); err != nil {
				fail("echo: %v", err)
			}
			if err := s.Close(); err != nil {
				fail("close: %v", err)
			}
		}()
	})
	fmt.Println("OK")
}

func main() {
	if len(os.Args) != 3 {
		fail("usage: %s client|server ADDR", os.Args[0])
	}
	conn, err := net.Dial("tcp", os.Args[2])
	if err != nil {
		fail("dial: %v", err)
	}
	switch os.Args[1] {
	case "client":
		runClient(conn)
	case "server":
		runServer(conn)
	default:
		fail("unknown mode %q", os.Args[1])
	}
}
